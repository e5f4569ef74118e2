"""REST views of accounts, the catalogue and the order lifecycle (DESIGN section 4).

Each view parses, calls one service or selector, and shapes the answer. A
role that may never use an endpoint gets 403 (HasRole, checked before any
lookup); an order the caller may not see is 404 (the selectors and services).
"""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from access.lockout import login_succeeded
from orders import selectors, services
from orders.api import serializers as order_io
from tracking.snapshot import order_snapshot_for_role
from xiaoxiang.api import JsonApiView, error_responses
from xiaoxiang.roles import ALL_ROLES, ROLE_CUSTOMER, ROLE_RIDER, ROLE_STAFF, ROLE_WAREHOUSE


def order_snapshot_for(*, user: AbstractBaseUser, order_id: str) -> dict[str, Any]:
    """The order snapshot as this user's role may see it (404 when they may not see the order)."""
    order = selectors.order_get_for_user(user=user, order_id=order_id)
    return order_snapshot_for_role(order=order, role=selectors.viewer_role(user=user, order=order))


# --- Auth ----------------------------------------------------------------------


class RegisterApi(JsonApiView):
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["auth"],
        summary="Create a customer account",
        request=order_io.RegisterInputSerializer,
        responses={201: order_io.AccountSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request: Request) -> Response:
        serializer = order_io.RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        account = {"id": user.pk, "username": user.get_username(), "email": user.email, "role": ROLE_CUSTOMER}
        return Response(order_io.AccountSerializer(account).data, status=status.HTTP_201_CREATED)


@extend_schema(
    tags=["auth"],
    summary="Obtain an access and a refresh token",
    responses={
        200: OpenApiResponse(
            order_io.TokenPairOutputSerializer, description="`access` (minutes) and `refresh` tokens."
        ),
        **error_responses(400, 401, 429),
    },
    description="Five failed logins for one username from one address lock that pair out for 15 minutes "
    "(LOGIN_FAILURE_LIMIT, LOGIN_COOLOFF_MINUTES): 429 with a `detail` and `Retry-After`, even for the right password.",
)
class TokenObtainApi(jwt_views.TokenObtainPairView):
    pass

    def get_serializer_context(self) -> dict[str, Any]:
        # simplejwt authenticates with the request in this context. django-axes marks a
        # lockout on the request it is given and its middleware reads Django's request,
        # so that is the one to give (the DRF wrapper would keep the mark to itself).
        return {**super().get_serializer_context(), "request": self.request._request}

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as error:
            raise InvalidToken(error.args[0]) from error
        login_succeeded(request=request._request, user=serializer.user)
        return Response(serializer.validated_data)


@extend_schema(
    tags=["auth"],
    summary="Rotate a refresh token",
    description="Answers a new access token and a new refresh token; the old refresh token is blacklisted.",
    responses={200: order_io.TokenPairOutputSerializer, **error_responses(400, 401, 429)},
)
class TokenRefreshApi(jwt_views.TokenRefreshView):
    pass


class LogoutApi(JsonApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["auth"],
        summary="Blacklist a refresh token",
        request=order_io.LogoutInputSerializer,
        responses={200: order_io.DetailSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request: Request) -> Response:
        serializer = order_io.LogoutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.auth_logout(user=request.user, refresh=serializer.validated_data["refresh"])
        return Response({"detail": "Logged out."})


# --- Catalogue -----------------------------------------------------------------


class ProductListApi(JsonApiView):
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["catalogue"],
        summary="The catalogue",
        responses={200: order_io.ProductSerializer(many=True), **error_responses(401, 429)},
    )
    def get(self, request: Request) -> Response:
        return Response(order_io.ProductSerializer(selectors.products_list(), many=True).data)


# --- Orders --------------------------------------------------------------------


class PagedOrderListView(GenericAPIView, JsonApiView):
    """A paginated list of order summaries from one selector."""

    def list_response(self, queryset) -> Response:
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(order_io.OrderSummarySerializer(page, many=True).data)


class OrderListCreateApi(PagedOrderListView):
    allowed_roles = {"GET": ALL_ROLES, "POST": (ROLE_CUSTOMER,)}

    @extend_schema(
        tags=["orders"],
        summary="My orders (customers: their own; staff: all; riders and warehouses: those they handle)",
        responses={200: order_io.OrderSummarySerializer(many=True), **error_responses(401, 403, 404, 429)},
    )
    def get(self, request: Request) -> Response:
        return self.list_response(selectors.orders_list_for_user(user=request.user))

    @extend_schema(
        tags=["orders"],
        summary="Place an order",
        description="Status 1 (pending payment); the total comes from the catalogue; the nearest warehouse serves it.",
        request=order_io.OrderCreateInputSerializer,
        responses={201: order_io.OrderSnapshotSerializer, **error_responses(400, 401, 403, 429)},
        examples=[
            OpenApiExample(
                "Two items",
                request_only=True,
                value={
                    "items": [{"sku": "VEG-001", "quantity": 2}, {"sku": "EGG-001", "quantity": 1}],
                    "delivery_address": "上海市徐汇区天钥桥路 1 号 3 室",
                    "delivery_lat": 31.2,
                    "delivery_lon": 121.45,
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = order_io.OrderCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.order_create(customer=request.user, **serializer.validated_data)
        return Response(order_snapshot_for(user=request.user, order_id=order.id), status=status.HTTP_201_CREATED)


class OrderDetailApi(JsonApiView):
    @extend_schema(
        tags=["orders"],
        summary="The order snapshot",
        responses={200: order_io.OrderSnapshotSerializer, **error_responses(401, 403, 404, 429)},
    )
    def get(self, request: Request, order_id: str) -> Response:
        return Response(order_snapshot_for(user=request.user, order_id=order_id))


_TRANSITION_ERRORS = error_responses(400, 401, 403, 404, 409, 429)


# POST one state change: parse the body, run one service, answer the updated
# snapshot for the caller's role. (A comment, not a docstring: drf-spectacular
# would publish a docstring as every subclass's description.)
class OrderTransitionApi(JsonApiView):
    input_serializer = order_io.VersionInputSerializer

    def transition(self, request: Request, order_id: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def post(self, request: Request, order_id: str) -> Response:
        serializer = self.input_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.transition(request, order_id, serializer.validated_data)
        return Response(order_snapshot_for(user=request.user, order_id=order_id))


def transition_schema(
    tag: str, summary: str, *, request=order_io.VersionInputSerializer, description: str | None = None
):
    return extend_schema_view(
        post=extend_schema(
            tags=[tag],
            summary=summary,
            description=description,
            request=request,
            responses={200: order_io.OrderSnapshotSerializer, **_TRANSITION_ERRORS},
        )
    )


@transition_schema("orders", "Pay (simulated): 1 → 2")
class OrderPayApi(OrderTransitionApi):
    allowed_roles = (ROLE_CUSTOMER,)

    def transition(self, request: Request, order_id: str, data: dict[str, Any]) -> None:
        services.order_pay(order_id=order_id, customer=request.user, **data)


@transition_schema("orders", "Cancel: 1 or 2 → 5")
class OrderCancelApi(OrderTransitionApi):
    allowed_roles = (ROLE_CUSTOMER, ROLE_STAFF)

    def transition(self, request: Request, order_id: str, data: dict[str, Any]) -> None:
        services.order_cancel(order_id=order_id, actor=request.user, **data)


# --- Warehouse -----------------------------------------------------------------


class WarehouseOrderListApi(PagedOrderListView):
    allowed_roles = (ROLE_WAREHOUSE,)

    @extend_schema(
        tags=["warehouse"],
        summary="Paid orders of my warehouse, oldest first",
        responses={200: order_io.OrderSummarySerializer(many=True), **error_responses(401, 403, 404, 429)},
    )
    def get(self, request: Request) -> Response:
        return self.list_response(selectors.warehouse_orders_to_prepare(user=request.user))


@transition_schema(
    "warehouse", "Report a picking stage (picking, picked, packed; forward only)", request=order_io.StageInputSerializer
)
class WarehouseStageApi(OrderTransitionApi):
    allowed_roles = (ROLE_WAREHOUSE,)
    input_serializer = order_io.StageInputSerializer

    def transition(self, request: Request, order_id: str, data: dict[str, Any]) -> None:
        services.order_stage_report(order_id=order_id, operator=request.user, **data)


@transition_schema(
    "warehouse",
    "Hand a packed order to a rider: 2 → 3",
    request=order_io.DispatchInputSerializer,
    description="`rider` is a rider's username; omitted, the nearest available rider takes it.",
)
class WarehouseDispatchApi(OrderTransitionApi):
    allowed_roles = (ROLE_WAREHOUSE,)
    input_serializer = order_io.DispatchInputSerializer

    def transition(self, request: Request, order_id: str, data: dict[str, Any]) -> None:
        services.order_dispatch(
            order_id=order_id,
            operator=request.user,
            rider_username=data["rider"] or None,
            expected_version=data["expected_version"],
        )


# --- Rider -----------------------------------------------------------------------


class RiderOrderListApi(PagedOrderListView):
    allowed_roles = (ROLE_RIDER,)

    @extend_schema(
        tags=["rider"],
        summary="My delivering orders, with delivery address and coordinates",
        responses={200: order_io.OrderSummarySerializer(many=True), **error_responses(401, 403, 404, 429)},
    )
    def get(self, request: Request) -> Response:
        return self.list_response(selectors.rider_orders_delivering(user=request.user))


@transition_schema("rider", "Mark delivered: 3 → 4")
class RiderDeliveredApi(OrderTransitionApi):
    allowed_roles = (ROLE_RIDER,)

    def transition(self, request: Request, order_id: str, data: dict[str, Any]) -> None:
        services.order_mark_delivered(order_id=order_id, rider=request.user, **data)

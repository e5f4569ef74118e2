"""REST views of rider GPS ingest and the order trajectory (DESIGN section 4)."""

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from orders import selectors as order_selectors
from tracking import selectors
from tracking.api import serializers as tracking_io
from tracking.role_views import flagged_points_visible
from tracking.services import location_points_ingest
from xiaoxiang import metrics
from xiaoxiang.api import JsonApiView, error_responses
from xiaoxiang.payloads import LenientJsonBodyParser
from xiaoxiang.roles import ROLE_RIDER

GEOJSON_MEDIA_TYPE = "application/geo+json"


class GeoJSONRenderer(JSONRenderer):
    # Lets clients ask for application/geo+json (errors then come in that type too).
    media_type = GEOJSON_MEDIA_TYPE


class RiderLocationsApi(JsonApiView):
    # NaN/Infinity tokens parse, then validation rejects just that point.
    allowed_roles = (ROLE_RIDER,)
    parser_classes = [LenientJsonBodyParser]
    # The ingest scope replaces the per-user rate: a rider posts every ~15 s plus offline batches.
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "ingest"

    @extend_schema(
        tags=["rider"],
        summary="Report GPS points: 1 to 500, live or an offline batch",
        description=(
            "Each point is validated on its own; rejected points are reported by index and the rest are stored. "
            "Re-uploads of a `client_id` count as `duplicates`. A body that is not `{points: [1..500]}` is 400."
        ),
        request=tracking_io.LocationBatchInputSerializer,
        examples=[
            OpenApiExample(
                "A live point",
                request_only=True,
                value={
                    "points": [
                        {
                            "client_id": "0f8e2c1a-live-1",
                            "lat": 31.19,
                            "lon": 121.44,
                            "recorded_at": "2026-01-01T08:00:00+08:00",
                            "accuracy": 8.5,
                            "speed": 4.2,
                            "heading": 90,
                        }
                    ]
                },
            )
        ],
        responses={200: tracking_io.IngestResultSerializer, **error_responses(400, 401, 403, 429)},
    )
    @metrics.INGEST_REQUEST_SECONDS.time()
    def post(self, request: Request) -> Response:
        points, rejected = tracking_io.location_batch_parse(request.data)
        result = location_points_ingest(rider_user=request.user, points=points)
        metrics.ingest_counted(result, rejected=len(rejected))
        rejected = sorted(rejected + result.rejected, key=lambda entry: entry["index"])
        # Already the documented shape (IngestResultSerializer): building that
        # serializer per request (it deep-copies its fields) cost more than the insert.
        return Response({"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected})


class OrderTrajectoryApi(JsonApiView):
    renderer_classes = [JSONRenderer, GeoJSONRenderer]

    @extend_schema(
        tags=["orders"],
        summary="The order's trajectory as GeoJSON",
        description=(
            "A FeatureCollection: the rider's path as a LineString in recorded_at order (`times` per vertex), "
            "plus a Point per status and stage event with its time and label. Customers see coordinates at "
            "4 decimals and the path only once the order is dispatched. Only staff see the points the GPS "
            "quality rule flagged, with `quality_flags` per vertex (`accuracy`, `zero`, `speed`; [] when fine)."
        ),
        responses={
            (200, GEOJSON_MEDIA_TYPE): OpenApiResponse(tracking_io.FeatureCollectionSerializer),
            **error_responses(401, 403, 404, 429),
        },
    )
    def get(self, request: Request, order_id: str) -> HttpResponse:
        order = order_selectors.order_get_for_user(user=request.user, order_id=order_id)
        role = order_selectors.viewer_role(user=request.user, order=order)
        content = tracking_io.trajectory_geojson(
            order=order,
            role=role,
            path=selectors.order_path(order=order, with_flagged=flagged_points_visible(role)),
            timeline=selectors.order_timeline(order=order),
        )
        return HttpResponse(content, content_type=GEOJSON_MEDIA_TYPE)

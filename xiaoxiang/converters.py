"""URL converters, registered once on import: `<order_id:order_id>` names an order in every
order-scoped route (REST, pages and sockets), so a malformed id never reaches a view or a query."""

from django.urls import register_converter

from xiaoxiang.ids import ORDER_ID_PATTERN


class OrderIdConverter:
    regex = ORDER_ID_PATTERN.pattern

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(OrderIdConverter, "order_id")

"""order_tracking.order_created_at: the order's creation time on each event, the partition key of 0006."""

from django.db import migrations, models
from django.db.models import OuterRef, Q, Subquery

import tracking.models


def order_created_at_fill(apps, schema_editor):
    TrackingEvent = apps.get_model("tracking", "TrackingEvent")
    Order = apps.get_model("orders", "Order")
    TrackingEvent.objects.filter(order_created_at__isnull=True).update(
        order_created_at=Subquery(Order.objects.filter(pk=OuterRef("order_id")).values("create_time")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0003_trajectory_archive"),
        ("tracking", "0004_verbose_names"),
    ]

    operations = [
        migrations.AddField(
            model_name="trackingevent",
            name="order_created_at",
            field=models.DateTimeField(null=True, editable=False, verbose_name="订单创建时间"),
        ),
        migrations.RunPython(order_created_at_fill, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="trackingevent",
            name="order_created_at",
            field=tracking.models.OrderCreatedAtField(editable=False, verbose_name="订单创建时间"),
        ),
        migrations.RemoveConstraint(model_name="trackingevent", name="order_tracking_unique_version"),
        migrations.RemoveConstraint(model_name="trackingevent", name="order_tracking_unique_client_id"),
        migrations.AddConstraint(
            model_name="trackingevent",
            constraint=models.UniqueConstraint(
                fields=("order", "version", "order_created_at"), name="order_tracking_unique_version"
            ),
        ),
        migrations.AddConstraint(
            model_name="trackingevent",
            constraint=models.UniqueConstraint(
                condition=Q(client_id__isnull=False),
                fields=("order", "client_id", "order_created_at"),
                name="order_tracking_unique_client_id",
            ),
        ),
    ]

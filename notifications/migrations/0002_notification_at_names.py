from django.db import migrations, models
from django.db.models import F


def read_flag_to_time(apps, schema_editor):
    # The old rows only knew "read", not when: the creation time is the best bound.
    Notification = apps.get_model("notifications", "Notification")
    Notification.objects.filter(read=True).update(read_at=F("created_at"))


def read_time_to_flag(apps, schema_editor):
    Notification = apps.get_model("notifications", "Notification")
    Notification.objects.filter(read_at__isnull=False).update(read=True)


# Kinds are named `order.<event>` throughout (the late and ETA notices already were).
KINDS = ["paid", "picking", "dispatched", "delivered", "cancelled", "assigned"]


def kinds_forward(apps, schema_editor):
    Notification = apps.get_model("notifications", "Notification")
    for kind in KINDS:
        Notification.objects.filter(kind=kind).update(kind=f"order.{kind}")


def kinds_backward(apps, schema_editor):
    Notification = apps.get_model("notifications", "Notification")
    for kind in KINDS:
        Notification.objects.filter(kind=f"order.{kind}").update(kind=kind)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]

    operations = [
        migrations.RenameField("notification", "created", "created_at"),
        migrations.AddField("notification", "read_at", models.DateTimeField(null=True, blank=True)),
        migrations.RunPython(read_flag_to_time, read_time_to_flag),
        migrations.RemoveField("notification", "read"),
        migrations.AlterModelOptions("notification", options={"ordering": ["-created_at", "-id"]}),
        migrations.RemoveIndex("notification", "notificatio_user_id_c59dd1_idx"),
        migrations.AddIndex(
            "notification", models.Index(fields=["user", "-created_at"], name="notificatio_user_id_c59dd1_idx")
        ),
        migrations.RunPython(kinds_forward, kinds_backward),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_verbose_names"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="trajectory_archive",
            field=models.JSONField(blank=True, editable=False, null=True, verbose_name="轨迹归档"),
        ),
    ]

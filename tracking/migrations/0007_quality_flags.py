"""order_tracking.quality_flags: why a GPS point is not trusted as a position (tracking/quality.py).

One `ALTER TABLE ... ADD COLUMN ... DEFAULT '' NOT NULL` on both databases. On
partitioned PostgreSQL it is run on the parent and reaches every partition
(and the partitions pg_partman makes later, which copy the parent's columns);
a constant default is only catalogue metadata there, so no partition is
rewritten. Existing points are unflagged.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0006_partition_order_tracking"),
    ]

    operations = [
        migrations.AddField(
            model_name="trackingevent",
            name="quality_flags",
            field=models.CharField(
                blank=True, db_default="", default="", max_length=32, verbose_name="定位质量标记"
            ),
        ),
    ]

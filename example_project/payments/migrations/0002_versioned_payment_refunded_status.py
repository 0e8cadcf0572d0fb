# Payment becomes a VersionedModel, and a refund becomes a status: the
# refunded flag's rows move to status "refunded" before the flag goes.

from django.db import migrations, models


def refunded_flag_to_status(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    Payment.objects.filter(refunded=True).update(status="refunded")


def refunded_status_to_flag(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    Payment.objects.filter(status="refunded").update(refunded=True, status="succeeded")


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="payment",
            name="version",
            field=models.PositiveIntegerField(default=1, editable=False),
        ),
        migrations.AlterField(
            model_name="payment",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "pending"),
                    ("succeeded", "succeeded"),
                    ("refunded", "refunded"),
                ],
                default="pending",
                max_length=16,
            ),
        ),
        migrations.RunPython(refunded_flag_to_status, refunded_status_to_flag),
        migrations.RemoveField(
            model_name="payment",
            name="refunded",
        ),
    ]

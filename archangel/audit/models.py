from django.db import models


class AuditEntry(models.Model):
    """One write: who (actor), through which door (source), what (action on an object), the changed fields.

    Append-only: nothing in the product updates or deletes these rows. Secret
    values never reach ``changes`` (see ``archangel.audit.context.masked``).
    """

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, help_text="user:<name>, job:<name>, webhook:<provider>, system")
    source = models.CharField(max_length=20, help_text="api, admin, webhook, job, command, system")
    action = models.CharField(max_length=50, help_text="create, update, delete, or a named operation")
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64, blank=True, default="")
    object_repr = models.CharField(max_length=200, blank=True, default="")
    changes = models.JSONField(default=dict, blank=True, help_text="field -> [before, after]; secrets masked")
    request_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["object_type", "object_id", "-at"], name="audit_object_at"),
            models.Index(fields=["actor", "-at"], name="audit_actor_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_type}:{self.object_id}"

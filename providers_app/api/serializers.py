from rest_framework import serializers

from providers_app.models import Provider


class ProviderSerializer(serializers.ModelSerializer):
    config = serializers.JSONField(
        help_text="Settings of the provider type. Secret keys (tokens, API keys, webhook and app secrets) are "
        'write-only: they read back as {"set": true|false}; sending that placeholder back keeps the stored value, '
        "null removes it."
    )
    health_status = serializers.CharField(read_only=True)

    class Meta:
        model = Provider
        fields = ["id", "name", "type", "config", "health_status", "weight", "created_at", "updated_at"]
        read_only_fields = ["id", "health_status", "created_at", "updated_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # Only whether each secret is set, never its value.
        data["config"] = {**instance.config, **{key: {"set": is_set} for key, is_set in instance.secrets_set().items()}}
        return data


class ProviderHealthSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.CharField()
    health_status = serializers.CharField()
    checked_at = serializers.DateTimeField()

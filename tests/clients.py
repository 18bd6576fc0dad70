"""API clients as integrations make them."""

from rest_framework.test import APIClient


def token_client(key: str) -> APIClient:
    """An API client that sends ``Authorization: Token <key>`` with every request."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client

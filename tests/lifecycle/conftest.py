"""The gunicorn tests here share the local-runner tests' server environment."""

from tests.test_local_runner import server_env  # noqa: F401 - a fixture

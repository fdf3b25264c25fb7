"""Command line: ``flask --app designrun users create EMAIL`` and friends.

The schema is created and changed only by ``flask --app designrun db upgrade`` (Flask-Migrate).
"""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup, FlaskGroup

from designrun.errors import ApiError

users_cli = AppGroup("users", help="Manage users (for ALLOW_SIGNUP=false setups).")


@users_cli.command("create")
@click.argument("email")
@click.option("--name", default=None, help="Display name (default: the e-mail's local part).")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="DESIGNRUN_PASSWORD",
    help="Password, at least 8 characters (prompted when omitted; or DESIGNRUN_PASSWORD).",
)
def create_user(email: str, name: str | None, password: str) -> None:
    """Create a user (with a personal account) who can then sign in."""
    from designrun.services.accounts import create_user as create

    try:
        user = create(email, password, name)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created user {user.email} ({user.id}), account {user.account_id}")


def register_cli(app: Flask) -> None:
    app.cli.add_command(users_cli)


def main() -> None:
    """The ``designrun`` console script: the flask CLI with this app preloaded."""
    from designrun import create_app
    from designrun.config import ConfigError

    def factory() -> Flask:
        try:
            return create_app()
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)

    FlaskGroup(create_app=factory, help="designrun: run and manage the service.")()

"""``crm users ...``: the people who sign in, their role, brands and regions (stored in the service's
store; every change written to the audit log)."""

from __future__ import annotations

import getpass
import json
import sys

import click

from crm.cli.service import _engine


def _password(confirm: bool = True) -> str:
    """The password from stdin: one line when piped (``printf '%s\\n' "$PW" | crm users add ...``),
    asked twice without echo at a terminal. Never an option: options land in shell history."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != first:
        raise click.ClickException("the two passwords differ; nothing changed")
    return first


def _audit(paths, by: str, reason: str, user, action: str) -> None:
    from crm.campaigns.approvals import name_problem, person_name
    from crm.campaigns.audit import append

    if name_problem(by):
        raise click.ClickException(f"--by: {name_problem(by)}")
    append(paths, "user_changed", by=person_name(by), reason=reason,
           details={"action": action, "user": user.name, "person": user.person, "role": user.role,
                    "brands": list(user.brands), "regions": list(user.regions)})


def _by_option(f):
    return click.option("--by", default=lambda: getpass.getuser(), show_default="your login name",
                        help="who makes the change (written to the audit log)")(f)


def _changes_a_user(f):
    """NAME, --by, --reason and --json: the options of every command that changes one user."""
    for option in reversed((click.argument("name"), _by_option,
                            click.option("--reason", default="", help="why (the audit log)"),
                            click.option("--json", "as_json", is_flag=True, help="print a machine-readable record"))):
        f = option(f)
    return f


def _show(user, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(user.to_dict(), indent=2))
        return
    state = ("disabled" if user.disabled_at else
             f"locked until {user.locked_until:%Y-%m-%d %H:%M} UTC" if user.locked_until else "active")
    click.echo(f"{user.name:<24} {user.role:<11} brands {' '.join(user.brands):<16} regions "
               f"{' '.join(user.regions):<16} {state}")


@click.group("users")
def users_group() -> None:
    """People who sign in to the web page: a role (marketing, compliance, analytics, support,
    admin), the brands and regions they may see, a hashed password. Every change is in the audit log."""


@users_group.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["marketing", "compliance", "analytics", "support", "admin"]),
              help="what they may do (crm/access.py)")
@click.option("--brand", "brands", multiple=True, required=True, help="a brand they may see (repeat; * for all)")
@click.option("--region", "regions", multiple=True, help="a jurisdiction they may see (repeat; default: * for all)")
@click.option("--person", help="their name as approvals record it, e.g. 'Ana Lopez' (default: NAME); the author "
                               "of a campaign (its owner) can never approve it")
@_by_option
@click.option("--reason", default="", help="why (the audit log)")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable record")
def add_cmd(name: str, role: str, brands: tuple[str, ...], regions: tuple[str, ...], person: str | None, by: str,
            reason: str, as_json: bool) -> None:
    """Add user NAME; the password is read from stdin (asked twice at a terminal), 12+ characters."""
    from crm.campaigns.approvals import name_problem, person_name
    from crm.store.users import UserError, add_user

    person = name if person is None else person
    if name_problem(person):
        raise click.ClickException(f"--person: {name_problem(person)}")
    paths, engine = _engine()
    try:
        user = add_user(engine, name, role, list(brands), list(regions) or ["*"], _password(), person_name(person))
        _audit(paths, by, reason, user, "added")
    except UserError as e:
        raise click.ClickException(str(e)) from e
    finally:
        engine.dispose()
    _show(user, as_json)


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable list")
def list_cmd(as_json: bool) -> None:
    """Every user with role, brands, regions and state (never a password or its hash)."""
    from crm.store.users import list_users

    _, engine = _engine()
    try:
        found = list_users(engine)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([u.to_dict() for u in found], indent=2))
        return
    if not found:
        click.echo("no users: crm users add NAME --role marketing --brand A  (password from stdin)")
    for u in found:
        _show(u, False)


def _change(name: str, by: str, reason: str, action: str, as_json: bool, change) -> None:
    from crm.store.users import UserError

    paths, engine = _engine()
    try:
        user = change(engine, name)
        _audit(paths, by, reason, user, action)
    except UserError as e:
        raise click.ClickException(str(e)) from e
    finally:
        engine.dispose()
    _show(user, as_json)


@users_group.command("passwd")
@_changes_a_user
def passwd_cmd(name: str, by: str, reason: str, as_json: bool) -> None:
    """Set NAME's password (from stdin) and lift a lockout."""
    from crm.store.users import set_password

    password = _password()
    _change(name, by, reason, "password_set", as_json, lambda e, n: set_password(e, n, password))


@users_group.command("disable")
@_changes_a_user
def disable_cmd(name: str, by: str, reason: str, as_json: bool) -> None:
    """Disable NAME: they can no longer sign in (kept for the audit log's sake)."""
    from crm.store.users import set_disabled

    _change(name, by, reason, "disabled", as_json, lambda e, n: set_disabled(e, n, True))


@users_group.command("enable")
@_changes_a_user
def enable_cmd(name: str, by: str, reason: str, as_json: bool) -> None:
    """Enable NAME again."""
    from crm.store.users import set_disabled

    _change(name, by, reason, "enabled", as_json, lambda e, n: set_disabled(e, n, False))


@users_group.command("unlock")
@_changes_a_user
def unlock_cmd(name: str, by: str, reason: str, as_json: bool) -> None:
    """Lift NAME's lockout after too many wrong passwords."""
    from crm.store.users import unlock

    _change(name, by, reason, "unlocked", as_json, unlock)


@users_group.command("totp")
@click.argument("name")
@_by_option
@click.option("--reason", default="", help="why (the audit log)")
def totp_cmd(name: str, by: str, reason: str) -> None:
    """Enroll (or replace) NAME's second factor: prints an otpauth:// URI once, for an authenticator
    app. The admin and compliance roles cannot sign in to the web page without one."""
    from crm.store.users import UserError, enroll_totp

    paths, engine = _engine()
    try:
        user, uri = enroll_totp(engine, name)
        _audit(paths, by, reason, user, "second_factor_enrolled")
    except UserError as e:
        raise click.ClickException(str(e)) from e
    finally:
        engine.dispose()
    click.echo(f"second factor enrolled for {user.name}; add it to an authenticator app (shown only this once):")
    click.echo(uri)

"""The signed-in person's own account page: changing their password (the current one checked
and counted like a sign-in, the rule for the new one from `engine.access`) and their API tokens,
listed and revoked one by one. Everything here concerns only the person signed in."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required, login_user
from flask_wtf import FlaskForm
from wtforms import PasswordField

from engine import access, clock

from . import runtime
from .auth import SignedIn, fresh_session, sign_in_limits

bp = Blueprint("account", __name__)


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page of this blueprint needs a signed-in user."""


class PasswordForm(FlaskForm):
    current = PasswordField(_l("Current password"))
    new = PasswordField(_l("New password"))
    again = PasswordField(_l("New password again"))


def _page(form: PasswordForm, errors: dict[str, str] | None = None):
    with runtime().store.read() as session:
        tokens = access.tokens(session, current_user.username, clock.now())
    return render_template("account.html", form=form, errors=errors or {}, tokens=tokens,
                           min_length=access.MIN_PASSWORD_LENGTH)


@bp.get("/account")
def page():
    return _page(PasswordForm())


def _refusal(exc: access.PasswordRefused) -> str:
    return _(exc.template, **exc.params)


@bp.post("/account/password")
@sign_in_limits  # the current password is checked like a sign-in: a wrong one counts, as on /login
def change_password():
    form = PasswordForm()
    me = current_user.username
    errors: dict[str, str] = {}
    if not form.validate_on_submit():  # (only the CSRF token is validated by the form itself)
        return _page(form), 400
    current, new, again = (form.current.data or ""), (form.new.data or ""), (form.again.data or "")
    for name, value in (("current", current), ("new", new), ("again", again)):
        if not value:
            errors[name] = _("This field is required.")
    if new and "new" not in errors:
        try:
            access.check_new_password(new)  # the cheap part of the rule, before any hashing
        except access.PasswordRefused as exc:
            errors[exc.field] = _refusal(exc)
    if again and new and again != new and "new" not in errors:
        errors["again"] = _("The new password typed again does not match the first.")
    if errors:
        return _page(form, errors)
    with runtime().store.read() as session:
        if access.check_password(session, me, current) is None:
            g.sign_in_failed = True  # counted against the sign-in limit of this user name
            return _page(form, {"current": _("The current password is not right. Nothing was changed.")})
    with runtime().store.write() as session:
        try:  # ends every session of the user (this one included) and revokes every token
            access.set_password(session, me, new, clock.now())
        except access.PasswordRefused as exc:  # the same password again
            errors[exc.field] = _refusal(exc)
        else:
            person = access.person(session, me)
    if errors:
        return _page(form, errors)
    fresh_session()
    login_user(SignedIn(person))  # this browser carries the new session version: it stays in
    flash(_("Your password is changed. Every other session and every API token of yours has "
            "ended; you are still signed in here."), "info")
    return redirect(url_for("account.page"))


@bp.post("/account/tokens/<token_id>/revoke")
def revoke_token(token_id: str):
    with runtime().store.write() as session:
        revoked = access.revoke_token(session, current_user.username, token_id, clock.now())
    if not revoked:  # another's token is as unknown as one that does not exist
        return render_template("error.html", status=404,
                               message=_("You have no API token %(id)s.", id=token_id[:64])), 404
    flash(_("API token %(id)s is revoked; it no longer works.", id=token_id), "info")
    return redirect(url_for("account.page"))

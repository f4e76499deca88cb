"""Sign-in and sign-out, the signed-in user (Flask-Login, from engine.access), and the choice of
language. Every page outside this blueprint requires a signed-in user (see `web.inbox`).
"""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from flask import (Blueprint, flash, redirect, render_template, request, session, url_for)
from flask_babel import get_locale, gettext as _, lazy_gettext as _l
from flask_login import UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from engine import access, notifications

from . import LANGUAGES, login_manager, runtime

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please sign in to see this page.")
login_manager.login_message_category = "info"


class SignedIn(UserMixin):
    """The Flask-Login user: an engine `Person`, looked up again on every request, so a user
    made inactive is signed out at once."""

    def __init__(self, person: access.Person, unread: int = 0):
        self.person = person
        self.unread = unread  # unread notifications, read with the user (the header shows it)

    def get_id(self) -> str:
        return self.person.username

    @property
    def username(self) -> str:
        return self.person.username

    @property
    def display_name(self) -> str:
        return self.person.display_name

    @property
    def roles(self) -> frozenset[str]:
        return self.person.roles


@login_manager.user_loader
def load_user(username: str) -> SignedIn | None:
    with runtime().store.read() as session_:
        try:
            return SignedIn(access.person(session_, username),
                            notifications.unread_count(session_, username))
        except access.UnknownUser:
            return None


class SignInForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


def safe_next(target: str | None) -> str | None:
    """A path on this site to go to, or None: never another host (no open redirect)."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme not in ("", "http", "https") or parts.netloc not in ("", request.host):
        return None
    if not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return urlunsplit(("", "", parts.path, parts.query, ""))


def _fresh_session() -> None:
    """A new session at every sign-in and sign-out (no fixation); the language stays."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = safe_next(request.args.get("next")) or url_for("inbox.inbox")
    if current_user.is_authenticated and request.method == "GET":
        return redirect(target)
    form = SignInForm()
    failed = False
    if form.validate_on_submit():
        with runtime().store.read() as session_:
            who = access.check_password(session_, form.username.data.strip(), form.password.data)
        if who is not None:
            _fresh_session()
            login_user(SignedIn(who))
            return redirect(target)
        failed = True  # the same words whether the user exists or not
    return render_template("login.html", form=form, failed=failed,
                           next=request.args.get("next", ""))


@bp.post("/logout")
def logout():
    logout_user()
    _fresh_session()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.post("/lang")
def set_language():
    lang = request.form.get("lang", "")
    if lang in LANGUAGES:
        session["lang"] = lang
    back = safe_next(request.form.get("next")) or safe_next(request.referrer) or url_for("inbox.inbox")
    return redirect(back)


@bp.app_errorhandler(CSRFError)
def csrf_refused(exc: CSRFError):
    message = _("The form was not accepted: it is too old or did not come from this site. "
                "Nothing was changed; load the page again and retry.")
    return render_template("error.html", message=message, status=400), 400


@bp.app_context_processor
def page_globals() -> dict:
    lang = str(get_locale() or "zh_CN")
    return {"lang": lang, "languages": LANGUAGES, "html_lang": "zh-CN" if lang.startswith("zh") else "en"}

"""Sign-in and sign-out, the signed-in user (Flask-Login, from engine.access), and the choice of
language. Every page outside this blueprint requires a signed-in user (see `web.inbox`).
"""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from flask import (Blueprint, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from flask_babel import get_locale, gettext as _, lazy_gettext as _l
from flask_login import UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from engine import access, notifications

from . import LANGUAGES, limiter, login_manager, runtime

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please sign in to see this page.")
login_manager.login_message_category = "info"


class SignedIn(UserMixin):
    """The Flask-Login user: an engine `Person`, looked up again on every request, so a user
    made inactive is signed out at once. The session holds the user's session version too: once
    it is raised (sign-out, a new password) every session made before is refused, copies included."""

    def __init__(self, person: access.Person, unread: int = 0):
        self.person = person
        self.unread = unread  # unread notifications, read with the user (the header shows it)

    def get_id(self) -> str:
        return f"{self.person.username}{_VERSION_MARK}{self.person.session_version}"

    @property
    def username(self) -> str:
        return self.person.username

    @property
    def display_name(self) -> str:
        return self.person.display_name

    @property
    def roles(self) -> frozenset[str]:
        return self.person.roles


_VERSION_MARK = "#"


@login_manager.user_loader
def load_user(user_id: str) -> SignedIn | None:
    username, mark, version = user_id.rpartition(_VERSION_MARK)
    if not mark:
        return None  # a session from before session versions: sign in again
    with runtime().store.read() as session_:
        try:
            person = access.person(session_, username)
        except access.UnknownUser:
            return None
        if str(person.session_version) != version:
            return None  # the user signed out (or changed password) since: this session is over
        return SignedIn(person, notifications.unread_count(session_, username))


def _signin_name() -> str:
    """The user name a sign-in attempt is for (page or API), as the per-user limit counts it."""
    if request.endpoint == "account.change_password" and current_user.is_authenticated:
        name = current_user.username  # one's own current password, checked again: same counter
    elif request.is_json:
        body = request.get_json(silent=True)
        name = body.get("username") if isinstance(body, dict) else None
    else:
        name = request.form.get("username")
    name = name.strip().casefold()[:200] if isinstance(name, str) else ""
    return name or "(no name)"  # (refused without hashing anyway; an empty key is not counted)


def _sign_in_failed(response) -> bool:
    """Only failed attempts count (the view says so), so a user signing in daily is never limited."""
    return bool(g.get("sign_in_failed"))


def sign_in_limits(view):
    """Per user name and per address: once either has failed too often, the next attempt is
    refused (429) before its password is hashed, so guessing costs the server next to nothing."""
    for scope, key, setting in (("sign-in-user", _signin_name, "BPM_SIGNIN_LIMIT_USER"),
                                ("sign-in-address", None, "BPM_SIGNIN_LIMIT_ADDRESS")):
        view = limiter.shared_limit(lambda setting=setting: current_app.config[setting], scope=scope,
                                    key_func=key, methods=["POST"], deduct_when=_sign_in_failed)(view)
    return view


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


def fresh_session() -> None:
    """A new session at every sign-in and sign-out (no fixation); the language stays."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


@bp.route("/login", methods=["GET", "POST"])
@sign_in_limits
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
            fresh_session()
            login_user(SignedIn(who))
            if not safe_next(request.args.get("next")) and access.may_design(who):
                return redirect(url_for("designer.index"))  # a designer has no inbox to speak of
            return redirect(target)
        failed = g.sign_in_failed = True  # the same words whether the user exists or not
    return render_template("login.html", form=form, failed=failed,
                           next=request.args.get("next", ""), demo_users=_demo_users())


def _demo_users() -> list[dict]:
    """The demo users to show on the sign-in page: only in demo mode (`bpm init --demo` marks the
    database; BPM_DEMO=1/0 in the environment or the app's config overrides it)."""
    setting = current_app.config.get("BPM_DEMO")
    if setting is None:
        with runtime().store.read() as session_:
            setting = access.demo_mode(session_)
    return access.demo_users() if setting else []


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:  # every session of the user ends, not just this cookie
        with runtime().store.write() as session_:
            access.end_sessions(session_, current_user.username)
    logout_user()
    fresh_session()
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
    # Babel names Chinese zh_Hans_CN: the page's language is one of LANGUAGES, so the language
    # buttons can say which one is active
    lang = "zh_CN" if str(get_locale() or "zh_CN").startswith("zh") else "en"
    return {"lang": lang, "languages": LANGUAGES, "html_lang": "zh-CN" if lang.startswith("zh") else "en"}

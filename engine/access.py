"""Who is who and who may act: users, roles, superiors and offices, and the demo organisation.

No Flask in here; the web layer and the command line both ask these functions.
"""
from __future__ import annotations

import functools
import hashlib
import os
import secrets
from dataclasses import dataclass
from typing import Iterable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .inputs import fits_key
from .statements import Prepared
from .store import ApiToken, Office, Role, User, UserRole

# The roles of the domain (RULES.md); seeded by every `bpm init`, since lanes resolve to them.
ROLES: dict[str, tuple[str, str]] = {
    "sales_rep": ("业务员", "Sales representative"),
    "office_manager": ("办事处经理", "Office manager"),
    "regional_manager": ("区域经理", "Regional manager"),
    "dept_manager": ("业务部经理", "Business department manager"),
    "vp_sales": ("销售副总经理", "VP of sales"),
    "general_manager": ("总经理", "General manager"),
    "general_office": ("总经办", "General manager's office"),
    "board": ("董事会", "Board of directors"),
    "hq_admin": ("总部行政部", "HQ administration"),
    "sales_plan": ("销售计划部", "Sales planning"),
    "finance": ("财务部", "Finance"),
    "warehouse": ("仓库/储运部", "Warehouse and shipping"),
    "production": ("生产部", "Production"),
    "sales_secretary": ("销售部秘书组", "Sales secretary group"),
    "auditor": ("审计/合规部", "Auditor"),
    "designer": ("流程设计", "Process designer"),
}

DEMO_OFFICES = [
    ("HQ", "总部 Headquarters", None),
    ("south_china", "华南大区 South China region", "HQ"),
    ("guangzhou", "广州办事处 Guangzhou office", "south_china"),
    ("nanning", "南宁办事处 Nanning office", "south_china"),
]

# username, display name, role, superior, office
DEMO_USERS = [
    ("gm.zhao", "赵总 Zhao", "general_manager", None, "HQ"),
    ("board.sun", "孙董 Sun", "board", None, "HQ"),
    ("gmo.tang", "唐 Tang", "general_office", "gm.zhao", "HQ"),
    ("vp.qian", "钱副总 Qian", "vp_sales", "gm.zhao", "HQ"),
    ("hq.li", "李 Li", "hq_admin", "gm.zhao", "HQ"),
    ("dm.zhou", "周经理 Zhou", "dept_manager", "vp.qian", "HQ"),
    ("rm.zheng", "郑经理 Zheng", "regional_manager", "vp.qian", "south_china"),
    ("om.wu", "吴主任 Wu", "office_manager", "rm.zheng", "guangzhou"),
    ("rep.wang", "王 Wang", "sales_rep", "om.wu", "guangzhou"),
    ("rep.feng", "冯 Feng", "sales_rep", "om.wu", "guangzhou"),
    ("om.lin", "林主任 Lin", "office_manager", "rm.zheng", "nanning"),
    ("rep.liu", "刘 Liu", "sales_rep", "om.lin", "nanning"),
    ("plan.chen", "陈 Chen", "sales_plan", "vp.qian", "HQ"),
    ("fin.chu", "褚 Chu", "finance", "gm.zhao", "HQ"),
    ("acct.xu", "徐 Xu", "finance", "fin.chu", "HQ"),
    ("wh.wei", "卫 Wei", "warehouse", "gm.zhao", "HQ"),
    ("prod.jiang", "蒋 Jiang", "production", "gm.zhao", "HQ"),
    ("ssg.shen", "沈 Shen", "sales_secretary", "vp.qian", "HQ"),
    ("audit.han", "韩 Han", "auditor", None, "HQ"),
    ("design.yang", "杨 Yang", "designer", None, "HQ"),
]

DEMO_PASSWORD = "demo"


class UnknownUser(LookupError):
    pass


@dataclass(frozen=True)
class Person:
    """A user as the engine needs to know them: name, roles, superior."""
    username: str
    display_name: str
    roles: frozenset[str]
    superior: str | None
    office_id: str | None
    session_version: int = 0  # raised when every session of the user ends (sign-out, password)


def seed_roles(session: Session) -> None:
    existing = set(session.scalars(select(Role.id)))
    for role_id, (zh, en) in ROLES.items():
        if role_id not in existing:
            session.add(Role(id=role_id, name_zh=zh, name_en=en))


def seed_demo(session: Session) -> int:
    """Add the demo organisation of CLI.md; users already present are left as they are."""
    seed_roles(session)
    offices = set(session.scalars(select(Office.id)))
    for office_id, name, parent in DEMO_OFFICES:
        if office_id not in offices:
            session.add(Office(id=office_id, name=name, parent_id=parent))
            session.flush()
    users = set(session.scalars(select(User.username)))
    # One hash for all demo users: they share the password and hashing is deliberately slow.
    password_hash = generate_password_hash(DEMO_PASSWORD)
    added = 0
    for username, display, role, superior, office in DEMO_USERS:
        if username in users:
            continue
        session.add(User(username=username, display_name=display, password_hash=password_hash,
                         office_id=office, superior=superior, active=True))
        session.flush()
        session.add(UserRole(username=username, role_id=role))
        added += 1
    return added


def add_user(session: Session, username: str, password: str, roles: list[str], *,
             display_name: str | None = None, superior: str | None = None,
             office_id: str | None = None) -> User:
    unknown = [r for r in roles if session.get(Role, r) is None]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}")
    user = User(username=username, display_name=display_name or username,
                password_hash=generate_password_hash(password), office_id=office_id,
                superior=superior, active=True)
    session.add(user)
    session.flush()
    for role in roles:
        session.add(UserRole(username=username, role_id=role))
    return user


_U, _UR, _T = User.__table__, UserRole.__table__, ApiToken.__table__
_PERSON = (select(_U.c.username, _U.c.display_name, _U.c.superior, _U.c.office_id, _UR.c.role_id,
                  _U.c.session_version).where(_U.c.active.is_(True)))
# One statement each, compiled once: the API resolves its caller on every request.
_SELECT_PERSON = Prepared(_PERSON.select_from(_U.outerjoin(_UR, _UR.c.username == _U.c.username))
                          .where(_U.c.username == bindparam("username")))
_SELECT_TOKEN_PERSON = Prepared(_PERSON.select_from(
    _T.join(_U, _U.c.username == _T.c.username).outerjoin(_UR, _UR.c.username == _U.c.username))
    .where(_T.c.token_hash == bindparam("token_hash"), _T.c.revoked_at.is_(None),
           _T.c.expires_at > bindparam("now", type_=_T.c.expires_at.type)))


def _person(rows) -> Person | None:
    if not rows:
        return None
    first = rows[0]
    return Person(first.username, first.display_name, frozenset(r.role_id for r in rows if r.role_id),
                  first.superior, first.office_id, first.session_version or 0)


def person(executor: Session | Connection, username: str) -> Person:
    """An active user and their roles, in one query."""
    if not fits_key(username, _U.c.username.type.length):
        raise UnknownUser(f"there is no user {username[:64]!r}" if isinstance(username, str) else "there is no such user")
    found = _person(_SELECT_PERSON.all(executor, {"username": username}))
    if found is None:
        raise UnknownUser(f"there is no user {username!r}")
    return found


@functools.lru_cache(maxsize=1)
def _unknown_user_hash() -> str:
    return generate_password_hash("no such user")


def check_password(session: Session, username: str, password: str) -> Person | None:
    if not fits_key(username, _U.c.username.type.length) or not fits_key(password, 1000):
        return None  # no such user can exist (NUL, a lone surrogate, too long)
    user = session.get(User, username)
    # Hash even for an unknown user, so the answer's timing does not tell which names exist.
    valid = check_password_hash(user.password_hash if user is not None else _unknown_user_hash(), password)
    if user is None or not user.active or not valid:
        return None
    return person(session, username)


def known_roles(session: Session) -> set[str]:
    return set(session.scalars(select(Role.id)))


def may_act(who: Person, role: str | None, assignee: str | None) -> bool:
    """A task held by someone is theirs alone; an open task belongs to its role."""
    if assignee is not None:
        return assignee == who.username
    return role is not None and role in who.roles


def may_view_instance(who: Person, initiator: str, open_tasks: Iterable[tuple[str | None, str | None]],
                      actors: Iterable[str]) -> bool:
    """Who may look at an instance (its data, history, comments, diagram): whoever started it,
    whoever acted on it, whoever may act on one of its open tasks (role, holder), and auditors."""
    if who.username == initiator or "auditor" in who.roles:
        return True
    if any(may_act(who, role, assignee) for role, assignee in open_tasks):
        return True
    return who.username in set(actors)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_lifetime() -> timedelta:
    """How long a bearer token works: BPM_TOKEN_LIFETIME_HOURS, a week by default."""
    return timedelta(hours=float(os.environ.get("BPM_TOKEN_LIFETIME_HOURS", "168")))


def issue_token(session: Session, username: str, at: datetime, lifetime: timedelta | None = None) -> str:
    """A new API bearer token for `username`, working until `at` + lifetime; only its hash is kept."""
    token = secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=_token_hash(token), username=username, created_at=at,
                         expires_at=at + (lifetime or token_lifetime())))
    return token


def token_id(token: str) -> str:
    """The public name of a token (in lists, to revoke it): the start of its hash, not the token."""
    return _token_hash(token)[:TOKEN_ID_LENGTH]


TOKEN_ID_LENGTH = 16


def person_for_token(executor: Session | Connection, token: str, now: datetime) -> Person | None:
    """The active user a bearer token was issued to, with their roles, in one query; or None when
    the token is unknown, expired or revoked."""
    if not fits_key(token, 1000):
        return None
    return _person(_SELECT_TOKEN_PERSON.all(executor, {"token_hash": _token_hash(token), "now": now}))


def tokens(session: Session, username: str, now: datetime) -> list[dict]:
    """The user's bearer tokens, newest first: id (not the token), issued, expires, revoked, working."""
    rows = session.scalars(select(ApiToken).where(ApiToken.username == username)
                           .order_by(ApiToken.created_at.desc(), ApiToken.token_hash))
    return [{"id": t.token_hash[:TOKEN_ID_LENGTH], "created_at": t.created_at, "expires_at": t.expires_at,
             "revoked_at": t.revoked_at,
             "active": t.revoked_at is None and t.expires_at is not None and t.expires_at > now}
            for t in rows]


def revoke_token(session: Session, username: str, token_id_: str, at: datetime) -> bool:
    """Revoke the user's token named `token_id_` (see `token_id`); False if they have none such.
    A token already revoked keeps its first revocation time."""
    if not fits_key(token_id_, 64) or len(token_id_) != TOKEN_ID_LENGTH:
        return False
    found = session.scalars(select(ApiToken).where(ApiToken.username == username,
                                                   ApiToken.token_hash.startswith(token_id_, autoescape=True))).all()
    if len(found) != 1:
        return False
    if found[0].revoked_at is None:
        found[0].revoked_at = at
    return True


def end_sessions(session: Session, username: str) -> None:
    """Every signed-in session of the user stops working (the session version they carry is old)."""
    session.execute(update(User).where(User.username == username)
                    .values(session_version=User.session_version + 1))


def set_password(session: Session, username: str, password: str, at: datetime) -> None:
    """A new password: every session of the user ends and every token of theirs is revoked."""
    user = session.get(User, username)
    if user is None:
        raise UnknownUser(f"there is no user {username!r}")
    user.password_hash = generate_password_hash(password)
    session.flush()
    end_sessions(session, username)
    session.execute(update(ApiToken).where(ApiToken.username == username, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=at))

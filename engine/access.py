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

from .inputs import fits_key
from .statements import Prepared
from .store import ApiToken, Office, Role, Setting, User, UserRole

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
    "bank_feed": ("银行回单接口", "Bank payment feed"),  # a service account's role: sends payment notices only
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
    ("bank.feed", "银行回单接口 Bank feed", "bank_feed", None, "HQ"),  # service account of the bank integration
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


def set_demo_mode(session: Session, on: bool = True) -> None:
    """Mark the database as the demo's (`bpm init --demo`): the sign-in page lists the demo users."""
    row = session.get(Setting, "demo")
    if row is None:
        session.add(Setting(key="demo", value="1" if on else "0"))
    else:
        row.value = "1" if on else "0"


def demo_mode(executor: Session | Connection) -> bool:
    """Whether `bpm init --demo` set this database up as the demo (BPM_DEMO in the web's config
    can override it)."""
    return executor.execute(select(Setting.value).where(Setting.key == "demo")).scalar() == "1"


def demo_users() -> list[dict]:
    """The demo organisation's people: username, name, role (id, Chinese, English), office (id, name)."""
    offices = {office_id: name for office_id, name, _ in DEMO_OFFICES}
    return [{"username": username, "name": display, "role": role, "role_zh": ROLES[role][0],
             "role_en": ROLES[role][1], "office": office, "office_name": offices[office]}
            for username, display, role, _, office in DEMO_USERS]


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


def generate_password_hash(password: str) -> str:
    """werkzeug.security's, imported when first needed: importing werkzeug costs a CLI read ~40 ms."""
    from werkzeug.security import generate_password_hash as generate
    return generate(password)


def check_password_hash(password_hash: str, password: str) -> bool:
    """werkzeug.security's, imported when first needed."""
    from werkzeug.security import check_password_hash as check
    return check(password_hash, password)


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


def may_act(who: Person, role: str | None, assignee: str | None, office_scope: str = "") -> bool:
    """A task held by someone is theirs alone; an open task belongs to its role, within its
    office or region (`office_scope`, see `task_scope`)."""
    if assignee is not None:
        return assignee == who.username
    return role is not None and role in who.roles and in_reach(who, office_scope)


def may_reply(who: Person, role: str | None, assignee: str | None, office_scope: str = "") -> bool:
    """Who replies to the superior on a task (4小时复命, seed 000 岗位基本原则): whoever may act on it
    now — its holder, or, while it is open, each holder of its role within its office or region."""
    return may_act(who, role, assignee, office_scope)


def may_view_instance(who: Person, initiator: str, open_tasks: Iterable[tuple],
                      actors: Iterable[str]) -> bool:
    """Who may look at an instance (its data, history, comments, diagram): whoever started it,
    whoever acted on it, whoever may act on one of its open tasks (role, holder[, office scope]),
    and auditors."""
    if who.username == initiator or "auditor" in who.roles:
        return True
    if any(may_act(who, *task) for task in open_tasks):
        return True
    return who.username in set(actors)


def may_search_all_instances(who: Person) -> bool:
    """The instance search over every instance (scope "all") is the auditor's; everyone else
    searches the instances they started or took part in (engine/instances.py)."""
    return "auditor" in who.roles


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


MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 200


class PasswordRefused(ValueError):
    """A new password not taken, and why: `template % params` is the sentence (pages translate
    `template`), `field` the form field it concerns."""

    def __init__(self, template: str, field: str = "new", **params):
        super().__init__(template % params)
        self.template, self.field, self.params = template, field, params


def check_new_password(password: str, current_hash: str | None = None) -> None:
    """The rule for a new password, whichever door sets it (the account page, `bpm password`):
    long enough, not too long, and not the password it replaces. Raises PasswordRefused."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRefused("the new password must have at least %(length)s characters",
                              length=MIN_PASSWORD_LENGTH)
    if not fits_key(password, MAX_PASSWORD_LENGTH):
        raise PasswordRefused("the new password must have at most %(length)s characters of valid "
                              "text (no NUL)", length=MAX_PASSWORD_LENGTH)
    if current_hash is not None and check_password_hash(current_hash, password):
        raise PasswordRefused("the new password must differ from the current one")


def set_password(session: Session, username: str, password: str, at: datetime) -> None:
    """A new password (see `check_new_password`): every session of the user ends and every token
    of theirs is revoked."""
    user = session.get(User, username)
    if user is None:
        raise UnknownUser(f"there is no user {username!r}")
    check_new_password(password, user.password_hash)
    user.password_hash = generate_password_hash(password)
    session.flush()
    end_sessions(session, username)
    session.execute(update(ApiToken).where(ApiToken.username == username, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=at))


# --- authority: who may start a process, send a message, deploy (one rule for every door) ----------
# Runtime.start/startable/message, versions.deploy, the pages, the JSON API and the CLI all ask these.

ANYONE = "*"           # a `start_roles` / `sender_roles` value: anyone signed in
OPERATOR = "operator"  # who a command run on the server's shell without --as acts as (CLI.md)
DEPLOY_ROLES = frozenset({"designer"})


def roles_property(text: str | None) -> frozenset[str] | None:
    """A BPMN property naming roles: 'finance', 'finance, bank_feed' or '*' (anyone signed in);
    None when the property is absent."""
    if text is None:
        return None
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def starters(start_lane_role: str | None, start_roles: str | None) -> frozenset[str]:
    """Who may start a process: its start event's `start_roles` property if it has one, else the
    role of the lane holding the start event; nobody when neither (a process only others call)."""
    declared = roles_property(start_roles)
    if declared is not None:
        return declared
    return frozenset({start_lane_role}) if start_lane_role else frozenset()


def _holds(who: Person, roles: frozenset[str]) -> bool:
    return ANYONE in roles or bool(roles & who.roles)


def may_start(who: Person, roles: frozenset[str]) -> bool:
    return _holds(who, roles)


def may_send(who: Person, senders: frozenset[str]) -> bool:
    """A message's `sender_roles`; a message that declares none is the operator's alone."""
    return _holds(who, senders)


def may_deploy(who: Person) -> bool:
    return bool(DEPLOY_ROLES & who.roles)


def may_design(who: Person) -> bool:
    """The designer's pages and their API (processes, versions, drafts, the modeller): the roles
    that may deploy, since a draft is only ever made to be deployed."""
    return may_deploy(who)


def may_migrate(who: Person) -> bool:
    """Moving running instances to another version of their process (engine.migration) is the
    designers' who deploy the versions."""
    return may_deploy(who)


# The receipts page (到账登记, docs/processes.md §4): finance looks orders up there and records the
# bank's receipts against them. Each receipt is still the message `payment_received`, which its
# process's `sender_roles` allow or refuse; this rule only says whose page it is.
RECEIPT_DESK_ROLES = frozenset({"finance"})


def may_record_receipts(who: Person) -> bool:
    """Whether `who` has the receipts page (finance: fin.chu, acct.xu in the demo organisation)."""
    return bool(RECEIPT_DESK_ROLES & who.roles)


def may_check_records(who: Person) -> bool:
    """Whether an instance's record is whole (the hash chain, the replay) is shown to the auditor."""
    return "auditor" in who.roles


# Evidence bundles and history tables (engine.evidence) carry whole instances out of the system:
# for the auditor, who reads every instance anyway.
EVIDENCE_ROLES = frozenset({"auditor"})


def may_export_evidence(who: Person) -> bool:
    """Whether `who` may download an instance's evidence bundle or its history as CSV (page, API)."""
    return bool(EVIDENCE_ROLES & who.roles)


def may_open_task(who: Person, role: str | None, assignee: str | None, office_scope: str = "") -> bool:
    """A task's page, form and draft: those who may act on it, and the auditor (who reads all)."""
    return may_act(who, role, assignee, office_scope) or "auditor" in who.roles


def roles_text(roles: Iterable[str]) -> str:
    """Roles as a refusal names them: sorted, 'anyone signed in' for ANYONE."""
    roles = set(roles)
    return "anyone signed in" if ANYONE in roles else ", ".join(sorted(roles))


# --- offices and separation of duties (RULES.md "Offices and separation of duties") -----------
# Offices (办事处) belong to regions (大区), regions to HQ (the root of the `office` tree). An open
# task of an office's role is for the people of the request's office, one of a region's role for
# those of its region; HQ's roles reach the whole company. The request's office is its
# initiator's. A task someone holds is theirs, wherever they sit (escalation, delegation).

TASK_REACH: dict[str, str] = {"office_manager": "office", "sales_rep": "office",
                              "regional_manager": "region"}
COMPANY = ""  # the office scope of a task any holder of its role may take


@dataclass(frozen=True)
class RequestOffice:
    """Where a request comes from: its initiator's office and that office's region (COMPANY for
    a request from HQ or from someone without an office)."""
    office: str = COMPANY
    region: str = COMPANY


_O = Office.__table__
_PARENT = _O.alias("parent")
_SELECT_REQUEST_OFFICE = Prepared(
    select(_O.c.id, _O.c.parent_id, _PARENT.c.parent_id.label("grandparent"))
    .select_from(_U.join(_O, _O.c.id == _U.c.office_id).outerjoin(_PARENT, _PARENT.c.id == _O.c.parent_id))
    .where(_U.c.username == bindparam("username")))


def request_office(executor: Session | Connection, initiator: str) -> RequestOffice:
    """The office and region of `initiator`'s requests, in one query. An office under a region
    has that region; a region is its own; the root (HQ) is no one's office."""
    row = _SELECT_REQUEST_OFFICE.first(executor, {"username": initiator})
    if row is None or row.parent_id is None:
        return RequestOffice()
    return RequestOffice(row.id, row.id if row.grandparent is None else row.parent_id)


def task_scope(role: str | None, where: RequestOffice) -> str:
    """The office scope of an open task of `role` in a request from `where`."""
    reach = TASK_REACH.get(role or "")
    if reach == "office":
        return where.office
    if reach == "region":
        return where.region
    return COMPANY


def in_reach(who: Person, office_scope: str) -> bool:
    """Whether a task of that scope is within `who`'s office or region."""
    return office_scope == COMPANY or who.office_id == office_scope


def inbox_scopes(who: Person) -> list[tuple[str, str]]:
    """The (role, office scope) pairs of the open tasks `who` may take: each role company-wide,
    and an office's or region's role also in their own office or region. The inbox reads one
    index range per pair."""
    pairs = []
    for role in sorted(who.roles):
        pairs.append((role, COMPANY))
        if role in TASK_REACH and who.office_id:
            pairs.append((role, who.office_id))
    return pairs


def level_refusal(username: str, level: str, initiator: str | None,
                  levels: dict[str, set[str]]) -> str | None:
    """Why `username` may not act on approval level `level` of a request, or None: nobody
    approves what they submitted ("submitted"), and one person approves at most one level of
    the same round ("other_level"); `levels` is who acted on (or holds) which level."""
    if username == initiator:
        return "submitted"
    if levels.get(username, set()) - {level}:
        return "other_level"
    return None


# --- customer archives (客户档案保密, seed 001 三(五)(六)) -------------------------------------------
# 三(六)2: only 总经理, 副总经理, 总经理助理, 财务部经理, 业务部经理, 设计部部长, 人事行政部部长 and
# 生产部部长 may query an archive; 三(六)3: anyone else needs the general manager's approval
# (总经理批准) for each access; 三(五)2(2): the reps and the department manager keep the cards.

# Posts held by every holder of the role: 总经理, 副总经理, 总经理助理 (the GM's office, 总经办), 业务部经理.
ARCHIVE_READER_ROLES = ("general_manager", "vp_sales", "general_office", "dept_manager")
# Departments whose head (部长/经理) reads, not their staff: 财务部经理, 人事行政部部长 (HQ
# administration, hq_admin, is the company's 人事行政部), 生产部部长. The head is a holder of the role
# whose superior does not hold it (fin.chu, superior gm.zhao; not acct.xu, superior fin.chu).
# 设计部部长 heads the stone design department, which the demo organisation does not have: the
# `designer` role designs processes, and is not on the list.
ARCHIVE_READER_HEADS = ("finance", "hq_admin", "production")


def archive_reader_basis(who: Person, superior_roles: frozenset[str]) -> str | None:
    """Why `who` may read every card by post ("role:…" or "head:…"), or None. `superior_roles`
    are the roles of `who`'s superior (to tell a department's head from its staff)."""
    for role in ARCHIVE_READER_ROLES:
        if role in who.roles:
            return f"role:{role}"
    for role in ARCHIVE_READER_HEADS:
        if role in who.roles and role not in superior_roles:
            return f"head:{role}"
    return None


def serves_customer(who: Person, serving_rep: str | None) -> bool:
    """A sales rep reads and keeps the cards of the customers he serves (the card's `rep`), and
    only those: another rep's or another office's customer needs a grant."""
    return "sales_rep" in who.roles and serving_rep is not None and serving_rep == who.username


def may_read_archive(who: Person, superior_roles: frozenset[str], serving_rep: str | None,
                     granted: bool) -> str | None:
    """The basis on which `who` may read a customer's card — a post of 三(六)2, serving the customer,
    or a grant of the general manager valid today — or None: refused."""
    basis = archive_reader_basis(who, superior_roles)
    if basis is not None:
        return basis
    if serves_customer(who, serving_rep):
        return "rep"
    return "grant" if granted else None


def may_edit_archive(who: Person, serving_rep: str | None) -> bool:
    """The department manager keeps every card; a sales rep the cards of his own customers."""
    return "dept_manager" in who.roles or serves_customer(who, serving_rep)


def may_create_archive(who: Person) -> bool:
    """Who builds a new card (建立客户档案卡, 三(五)2(1)): the department manager, and a sales rep —
    who then serves that customer (a rep's new card names him as its rep; only the department
    manager may name another, `may_assign_customer`)."""
    return "dept_manager" in who.roles or "sales_rep" in who.roles


def may_assign_customer(who: Person) -> bool:
    """Who says which rep serves a customer (the card's `rep`): the department manager (客户管理主要
    由业务部经理负责, 三(二))."""
    return "dept_manager" in who.roles


def may_grant_archive(who: Person) -> bool:
    """Only the general manager grants access to an archive (总经理批准, 三(六)3)."""
    return "general_manager" in who.roles


def may_view_archive_reads(who: Person) -> bool:
    """The record of reads is for the auditor, and for the general manager who grants access."""
    return "auditor" in who.roles or "general_manager" in who.roles


# --- the SLA breach report (engine/reports.py) ----------------------------------------------------
# RULES.md, the 4-hour reply: "the breach is recorded for the auditor". It names no other reader:
# the general manager and 总经办 learn of a silent approver by the escalation itself (the task
# comes to them), not through the report *(choice: add their roles here if the company wants it)*.
SLA_REPORT_READERS = frozenset({"auditor"})


def may_read_sla_report(who: Person) -> bool:
    """The SLA breach report (breaches by process, step, person, office, month, and their instances)."""
    return bool(who.roles & SLA_REPORT_READERS)


# --- the credit list (客户信用等级一览表; engine/credit.py) -------------------------------------------
# Kept by the sales secretary group (seed 004 SSG 四 1 7)), a change approved by the department
# manager. Not the confidential archive: the people who set or use payment terms see it, and the
# auditor *(choice: the reps see a customer's level in their own orders)*.
CREDIT_LIST_READERS = frozenset({"sales_secretary", "dept_manager", "vp_sales", "general_manager",
                                 "general_office", "finance", "auditor"})


# --- capital in use of a region (区域资金占用, seed 002 二) ----------------------------------------
# The figure is the regional manager's to keep under the limit and the VP's (分管副总) to watch over
# every region; the general manager sees them all too *(choice: he approves the regions' expenses)*.
CAPITAL_READER_ROLES = ("vp_sales", "general_manager")


def may_see_capital(who: Person, region: str | None) -> bool:
    """Whether `who` may see the capital in use of `region`: its own regional manager (whose office
    is the region), and the VP of sales and the general manager for every region. The page, the
    API and the command line ask this one function."""
    if any(role in who.roles for role in CAPITAL_READER_ROLES):
        return True
    return "regional_manager" in who.roles and bool(region) and who.office_id == region


def may_view_credit_list(who: Person) -> bool:
    return bool(who.roles & CREDIT_LIST_READERS)


def may_approve_credit(who: Person) -> bool:
    """A change of a customer's credit level takes effect only with the department manager's approval."""
    return "dept_manager" in who.roles

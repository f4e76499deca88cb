"""Evidence bundles: one file an auditor downloads and checks offline, without the database.

`export` writes, for each instance, its hash-chained log (every column the chain covers), its state
and state hash, the verification result at export time (audit.verify), and the files of the
definition version it ran on (BPMN, DMN, forms); a manifest lists every member with its SHA-256 and
each instance's root (the hash of its last log entry, to compare with the live system).
`verify_bundle` checks such a file: the container byte by byte, every member against the manifest,
then each instance as audit.verify does — the chain recomputed, the definition parsed again from
its files and every logged input replayed on it, the state compared — naming the first bad place.

The container is an uncompressed POSIX tar (`tar xf` opens it) written canonically: fixed header
fields, members in the manifest's order, JSON in one canonical form, the log one entry per line.
Every byte of the file is then either checked against what the writer would have written (tar
headers, padding, the end of the archive) or covered by a SHA-256 in the manifest, which covers
itself (`manifest_sha256`). So one changed byte anywhere is found and named: a header, a member,
and in a log the step. What offline checking cannot catch is a bundle forged whole (every hash
recomputed): only the roots compared with the live system's tell that (docs/evidence.md).
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import access, audit, clock, spreadsheet, state
from .definitions import DefinitionError, content_hash, load_deployed
from .runtime import GENESIS_HASH, EngineError, NotFound, _entry_hash, loaded_from
from .store import Definition, Instance, LogEntry

FORMAT = "bpm-evidence-bundle/1"
MANIFEST = "manifest.json"
CONTENT_TYPE = "application/x-tar"
_BLOCK = 512
_ENTRY_KEYS = ("seq", "at", "actor", "command", "input", "state_hash", "prev_hash", "hash")


class BundleRejected(EngineError):
    """The file is not a whole evidence bundle; the sentence names the first bad place."""


# --- the canonical forms ----------------------------------------------------------------------------

def _json(value: Any) -> bytes:
    return (state.canonical(value) + "\n").encode("utf-8")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _instant(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


@dataclass(frozen=True)
class BundledEntry:
    """One log entry as a bundle holds it: the columns of store.LogEntry the hash chain covers."""
    seq: int
    at: datetime
    actor: str
    command: str
    input: dict
    state_hash: str
    prev_hash: str
    hash: str

    def line(self) -> bytes:
        # Keys in a fixed order, not sorted: the input keeps the order it was logged in, which is
        # the order the replayed data gets, and so part of every state hash after it.
        return (json.dumps({"seq": self.seq, "at": _instant(self.at), "actor": self.actor,
                            "command": self.command, "input": self.input, "state_hash": self.state_hash,
                            "prev_hash": self.prev_hash, "hash": self.hash},
                           ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")


@dataclass(frozen=True)
class BundledInstance:
    """What audit.row_verdict reads of an instance row."""
    id: str
    revision: int
    log_hash: str
    state_hash: str
    state: str


def _log(entries: Iterable[Any]) -> bytes:
    return b"".join(BundledEntry(e.seq, e.at, e.actor, e.command, e.input, e.state_hash, e.prev_hash,
                                 e.hash).line() for e in entries)


# --- the tar container --------------------------------------------------------------------------------

def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def _pad(size: int) -> int:
    return -size % _BLOCK


def _pack(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    for name, data in members:
        out.write(_header(name, len(data)))
        out.write(data)
        out.write(b"\0" * _pad(len(data)))
    out.write(b"\0" * (2 * _BLOCK))
    return out.getvalue()


@dataclass
class _Damage:
    offset: int
    index: int          # the member whose header, padding or place it is (-1: the end of the archive)
    what: str           # "header", "padding", "end", "short", "trailing"


def _read_header(block: bytes) -> tuple[str, int] | None:
    """(name, size) if the block is exactly the header the writer makes for them, else None."""
    size_field = block[124:136]
    if size_field[11:] != b"\0" or any(c not in b"01234567" for c in size_field[:11]):
        return None
    try:
        name = block[0:100].split(b"\0", 1)[0].decode("utf-8")
        prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8")
        full = f"{prefix}/{name}" if prefix else name
        size = int(size_field[:11], 8)
        return (full, size) if name and _header(full, size) == block else None
    except (UnicodeDecodeError, ValueError):
        return None


def _unpack(data: bytes) -> tuple[list[tuple[str, bytes]], _Damage | None]:
    """The members in order, and the first place where the bytes are not the writer's (or None)."""
    members: list[tuple[str, bytes]] = []
    pos = 0
    while True:
        block = data[pos:pos + _BLOCK]
        if len(block) < _BLOCK:
            return members, _Damage(pos, len(members), "short")
        if block.count(0) >= _BLOCK - 1 and block[257:262] != b"ustar":  # the end (perhaps one byte changed)
            tail = data[pos:]
            if len(tail) < 2 * _BLOCK:
                return members, _Damage(pos, -1, "short")
            changed = next((i for i, c in enumerate(tail[:2 * _BLOCK]) if c), None)
            if changed is not None:
                return members, _Damage(pos + changed, -1, "end")
            if len(tail) > 2 * _BLOCK:
                return members, _Damage(pos + 2 * _BLOCK, -1, "trailing")
            return members, None
        read = _read_header(block)
        if read is None:
            return members, _Damage(pos, len(members), "header")
        name, size = read
        content = data[pos + _BLOCK:pos + _BLOCK + size]
        padding = data[pos + _BLOCK + size:pos + _BLOCK + size + _pad(size)]
        if len(content) < size or len(padding) < _pad(size):
            return members, _Damage(pos, len(members), "short")
        members.append((name, content))
        changed = next((i for i, c in enumerate(padding) if c), None)
        if changed is not None:
            return members, _Damage(pos + _BLOCK + size + changed, len(members) - 1, "padding")
        pos += _BLOCK + size + _pad(size)


# --- export --------------------------------------------------------------------------------------------

def instance_member(instance_id: str, part: str) -> str:
    return f"instances/{instance_id}/{part}"


def definition_member(definition_id: int, part: str) -> str:
    return f"definitions/{definition_id}/{part}"


def export(session: Session, instance_ids: Iterable[str], script_engine, *, at: datetime | None = None,
           by: str | None = None) -> bytes:
    """One evidence bundle (a tar file) of the instances, verified now (audit.verify)."""
    at = at or clock.now()
    ids = list(dict.fromkeys(instance_ids))
    if not ids:
        raise BundleRejected("name at least one instance to put in the bundle")
    members: list[tuple[str, bytes]] = []
    listed: list[dict] = []
    definitions: dict[int, Definition] = {}
    for instance_id in ids:
        row = session.get(Instance, instance_id) if isinstance(instance_id, str) and len(instance_id) <= 36 else None
        if row is None:
            raise NotFound("there is no instance %(instance)s", instance=str(instance_id)[:80])
        for _ in range(3):  # a command may land between the two reads (PostgreSQL reads per statement)
            entries = list(session.scalars(select(LogEntry).where(LogEntry.instance_id == instance_id)
                                           .order_by(LogEntry.seq)))
            if entries and row.log_hash == entries[-1].hash:
                break
            session.refresh(row)
        verdict = audit.verify(session, instance_id, script_engine)
        definition = definitions.get(row.definition_id) or session.get(Definition, row.definition_id)
        definitions[row.definition_id] = definition
        # An instance moved between versions (engine.migration) replays on each version it ran on.
        for number in sorted({v for e in entries if e.command == "migrate" for v in (
                (e.input or {}).get("from"), (e.input or {}).get("to")) if isinstance(v, int)}):
            other = session.scalar(select(Definition).where(Definition.process_id == row.process_id,
                                                            Definition.version == number))
            if other is not None:
                definitions.setdefault(other.id, other)
        members += [
            (instance_member(row.id, "instance.json"), _json({
                "id": row.id, "process_id": row.process_id, "definition_id": row.definition_id,
                "version": definition.version, "status": row.status, "business_key": row.business_key,
                "customer": row.customer, "initiator": row.initiator, "revision": row.revision,
                "state_hash": row.state_hash, "log_hash": row.log_hash,
                "created_at": _instant(row.created_at), "updated_at": _instant(row.updated_at),
                "completed_at": _instant(row.completed_at),
                "verified_at_export": {"whole": verdict.ok, "steps": verdict.steps, "problem": verdict.problem,
                                       "template": verdict.template, "params": verdict.params}})),
            (instance_member(row.id, "state.json"), row.state.encode("utf-8")),
            (instance_member(row.id, "log.jsonl"), _log(entries)),
        ]
        listed.append({"id": row.id, "process_id": row.process_id, "version": definition.version,
                       "business_key": row.business_key, "steps": len(entries), "root": row.log_hash,
                       "whole_at_export": verdict.ok})
    roles = sorted(access.known_roles(session))
    for definition in definitions.values():
        names = sorted(definition.files)
        members.append((definition_member(definition.id, "definition.json"), _json({
            "id": definition.id, "process_id": definition.process_id, "version": definition.version,
            "name": definition.name, "content_hash": definition.content_hash,
            "deployed_by": definition.deployed_by, "deployed_at": _instant(definition.deployed_at),
            "known_roles": roles, "files": names})))
        members += [(definition_member(definition.id, f"files/{name}"), definition.files[name].encode("utf-8"))
                    for name in names]
    manifest = {"format": FORMAT, "exported_at": _instant(at), "exported_by": by, "instances": listed,
                "members": [{"name": name, "size": len(data), "sha256": _sha(data)} for name, data in members]}
    manifest["manifest_sha256"] = _sha(_json(manifest))
    return _pack([(MANIFEST, _json(manifest)), *members])


def file_name(session: Session, instance_id: str) -> str:
    """A download's name: the business key (when it makes a safe file name) and the instance id."""
    key = session.scalar(select(Instance.business_key).where(Instance.id == instance_id)) or ""
    safe = "".join(c for c in key if c.isascii() and (c.isalnum() or c in "-_."))[:60]
    return f"evidence-{safe + '-' if safe else ''}{instance_id}.tar"


# --- verification --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bundle:
    """What a whole bundle says of itself (its manifest): shown beside the verdicts."""
    exported_at: str | None
    exported_by: str | None
    manifest_sha256: str
    roots: dict[str, str]      # instance id -> the hash of its last log entry


def _rejected(template: str, /, **params: Any) -> BundleRejected:
    return BundleRejected(template, **params)


def _describe(damage: _Damage, members: list[tuple[str, bytes]], expected: list[str]) -> BundleRejected:
    def member(index: int) -> str:
        if index < len(members):
            return members[index][0]
        return expected[index] if index < len(expected) else f"#{index + 1}"
    if damage.what == "header":
        return _rejected("byte %(offset)d: the tar header of member %(member)s was changed",
                         offset=damage.offset, member=member(damage.index))
    if damage.what == "padding":
        return _rejected("byte %(offset)d: the padding after member %(member)s was changed",
                         offset=damage.offset, member=member(damage.index))
    if damage.what == "end":
        return _rejected("byte %(offset)d: the end of the archive was changed", offset=damage.offset)
    if damage.what == "trailing":
        return _rejected("the bundle has bytes after the end of its archive (from byte %(offset)d)",
                         offset=damage.offset)
    return _rejected("the bundle is cut short at byte %(offset)d (in member %(member)s)", offset=damage.offset,
                     member=member(damage.index) if damage.index >= 0 else "the end of the archive")


def _manifest(members: list[tuple[str, bytes]], damage: _Damage | None, size: int) -> dict:
    if not members or members[0][0] != MANIFEST:
        if damage is not None and damage.index == 0 and damage.what == "header" and size >= _BLOCK:
            raise _describe(damage, members, [MANIFEST])
        raise _rejected("this file is not an evidence bundle (it does not begin with %(name)s)", name=MANIFEST)
    raw = members[0][1]
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _rejected("%(name)s was changed: it is no longer JSON", name=MANIFEST) from None
    if not isinstance(manifest, dict) or _json(manifest) != raw:
        raise _rejected("%(name)s was changed: it is not in the form it was written in", name=MANIFEST)
    claimed = manifest.pop("manifest_sha256", None)
    if claimed != _sha(_json(manifest)):
        raise _rejected("%(name)s was changed: its SHA-256 is not the one it records", name=MANIFEST)
    manifest["manifest_sha256"] = claimed
    if manifest.get("format") != FORMAT:
        raise _rejected("this bundle is of format %(format)s; this engine reads %(expected)s",
                        format=str(manifest.get("format")), expected=FORMAT)
    return manifest


def _parse_log(instance_id: str, raw: bytes) -> tuple[list[BundledEntry], audit.Verdict | None]:
    """The log's entries, or the first entry that is not as written: a line that is not an entry, a
    step missing, an entry whose hash is not the chain's. (Replay is not run here.)"""
    where = instance_member(instance_id, "log.jsonl")
    entries: list[BundledEntry] = []
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        return entries, _bad(instance_id, len(lines), "%(member)s: step %(step)d was changed (the log does not "
                             "end with a whole line)", member=where, step=len(lines))
    prev = GENESIS_HASH
    for number, line in enumerate(lines, start=1):
        entry = _entry(line + b"\n")
        if entry is None:
            return entries, _bad(instance_id, len(lines), "%(member)s: step %(step)d was changed: line %(step)d "
                                 "is no longer a log entry", member=where, step=number)
        expected = _entry_hash(instance_id, entry.seq, entry.at, entry.actor, entry.command, entry.input,
                               entry.state_hash, entry.prev_hash)
        if entry.hash != expected:  # named by its line: its own step number may be what was changed
            return entries, _bad(instance_id, len(lines), "%(member)s: step %(step)d (%(command)s) was changed: "
                                 "its hash is not the one the chain records", member=where, step=number,
                                 command=entry.command)
        if entry.seq > number:
            return entries, _bad(instance_id, len(lines), "%(member)s: step %(step)d is missing (the next "
                                 "entry is step %(next)d)", member=where, step=number, next=entry.seq)
        if entry.seq < number:
            return entries, _bad(instance_id, len(lines), "%(member)s: line %(line)d holds step %(step)d again: "
                                 "the log was rearranged", member=where, line=number, step=entry.seq)
        if entry.prev_hash != prev:
            return entries, _bad(instance_id, len(lines), "%(member)s: step %(step)d (%(command)s) does not follow "
                                 "the step before it (an entry before it was changed or removed)", member=where,
                                 step=entry.seq, command=entry.command)
        prev = entry.hash
        entries.append(entry)
    return entries, None


def _entry(line: bytes) -> BundledEntry | None:
    try:
        d = json.loads(line)
        if not isinstance(d, dict) or tuple(d) != _ENTRY_KEYS:
            return None
        at = datetime.fromisoformat(d["at"])
        if at.tzinfo is None or not isinstance(d["seq"], int) or not isinstance(d["input"], dict) or not all(
                isinstance(d[k], str) for k in ("actor", "command", "state_hash", "prev_hash", "hash")):
            return None
        entry = BundledEntry(d["seq"], at, d["actor"], d["command"], d["input"], d["state_hash"],
                             d["prev_hash"], d["hash"])
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        return None
    return entry if entry.line() == line else None


def _bad(instance_id: str, steps: int, template: str, /, **params: Any) -> audit.Verdict:
    return audit.Verdict(instance_id, steps, template, params)


def _object(raw: bytes) -> dict | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) and _json(value) == raw else None


def read_bundle(data: bytes) -> tuple[Bundle, dict[str, bytes]]:
    """The container checked byte by byte and every member against the manifest. Damage outside an
    instance's own members raises BundleRejected; an instance's changed member is left for
    `verify_bundle` to name in that instance's verdict. Returns the manifest and the members."""
    members, damage = _unpack(data)
    manifest = _manifest(members, damage, len(data))
    listed = manifest.get("members") or []
    expected = [MANIFEST] + [m.get("name") for m in listed]
    if damage is not None:
        raise _describe(damage, members, expected)
    names = [name for name, _ in members]
    for name in expected:
        if name not in names:
            raise _rejected("member %(member)s, listed in the manifest, is not in the bundle", member=name)
    for name in names:
        if name not in expected:
            raise _rejected("the bundle holds %(member)s, which the manifest does not list", member=name)
    if len(names) != len(set(names)) or names != expected:
        moved = next((n for n, e in zip(names, expected) if n != e), names[-1])
        raise _rejected("member %(member)s is not where the manifest puts it: the bundle was rearranged", member=moved)
    by_name = dict(members)
    roots = {str(i.get("id")): str(i.get("root")) for i in manifest.get("instances") or []}
    bundle = Bundle(manifest.get("exported_at"), manifest.get("exported_by"), manifest["manifest_sha256"], roots)
    own = {instance_member(i, part) for i in roots for part in ("instance.json", "state.json", "log.jsonl")}
    for m in listed:
        name = m["name"]
        if _sha(by_name[name]) != m.get("sha256") and name not in own:
            raise _rejected("%(member)s was changed: its SHA-256 is not the one the manifest records", member=name)
    return bundle, by_name


def verify_bundle(data: bytes, script_engine) -> list[audit.Verdict]:
    """Check an evidence bundle without the database: one verdict per instance, in the manifest's
    order. Raises BundleRejected, naming the place, when the container, the manifest or a
    definition is not whole (then no instance's verdict could be trusted)."""
    from . import determinism
    determinism.install()
    bundle, members = read_bundle(data)
    manifest = json.loads(members[MANIFEST])
    hashes = {m["name"]: m["sha256"] for m in manifest["members"]}
    loaded_by_id: dict[int, Any] = {}
    verdicts = []
    for listed in manifest["instances"]:
        instance_id = str(listed.get("id"))
        parts = {part: instance_member(instance_id, part) for part in ("instance.json", "state.json", "log.jsonl")}
        missing = next((name for name in parts.values() if name not in members), None)
        if missing is not None:
            raise _rejected("the manifest lists instance %(instance)s, but the bundle has no %(member)s",
                            instance=instance_id, member=missing)
        changed = [name for name in parts.values() if _sha(members[name]) != hashes[name]]
        entries, problem = _parse_log(instance_id, members[parts["log.jsonl"]])
        if changed and problem is None:
            problem = _bad(instance_id, len(entries), "%(member)s was changed: its SHA-256 is not the one the "
                           "manifest records", member=changed[0])
        if problem is not None:
            verdicts.append(problem)
            continue
        row = _object(members[parts["instance.json"]])
        if row is None or row.get("id") != instance_id or not isinstance(row.get("definition_id"), int):
            verdicts.append(_bad(instance_id, len(entries), "%(member)s is not an instance's record",
                                 member=parts["instance.json"]))
            continue
        definition_id = row["definition_id"]
        if definition_id not in loaded_by_id:
            loaded_by_id[definition_id] = _loaded(definition_id, members)
        loaded = loaded_by_id[definition_id]
        if not entries:
            verdicts.append(_bad(instance_id, 0, "the instance has no log entries"))
            continue
        version = _bundled_versions(members, loaded_by_id, str(row.get("process_id")))
        moved = next((e for e in entries if e.command == "migrate"), None)
        if moved is not None:  # replayed from the version it started on (audit.pinned)
            try:
                loaded = version((moved.input or {}).get("from"))
            except LookupError:
                pass
        found = audit.replay_verdict(instance_id, entries, loaded, script_engine, version)
        if found is None:
            try:
                found = audit.row_verdict(BundledInstance(instance_id, int(row["revision"]), str(row["log_hash"]),
                                                          str(row["state_hash"]),
                                                          members[parts["state.json"]].decode("utf-8")), entries)
            except (KeyError, TypeError, ValueError, UnicodeDecodeError):
                found = _bad(instance_id, len(entries), "%(member)s is not an instance's record",
                             member=parts["instance.json"])
        if found.ok and bundle.roots.get(instance_id) != entries[-1].hash:
            found = _bad(instance_id, len(entries), "the manifest's root of instance %(instance)s is not the hash "
                         "of its last step", instance=instance_id)
        verdicts.append(found)
    return verdicts


def _bundled_versions(members: dict[str, bytes], loaded_by_id: dict[int, Any], process_id: str):
    """Version n of `process_id` among the bundle's definitions (audit.replay_entries' `version`)."""
    def version(number: Any):
        for name in members:
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "definitions" and parts[2] == "definition.json" and parts[1].isdigit():
                meta = _object(members[name]) or {}
                if meta.get("process_id") == process_id and meta.get("version") == number:
                    definition_id = int(parts[1])
                    if definition_id not in loaded_by_id:
                        loaded_by_id[definition_id] = _loaded(definition_id, members)
                    return loaded_by_id[definition_id]
        raise LookupError(f"the bundle has no version {number} of {process_id}")
    return version


def _loaded(definition_id: int, members: dict[str, bytes]):
    """The definition version parsed again from its bundled files, as `bpm deploy` parsed it."""
    where = definition_member(definition_id, "definition.json")
    meta = _object(members.get(where, b""))
    if meta is None or not isinstance(meta.get("files"), list):
        raise _rejected("%(member)s is missing or is not a definition's record", member=where)
    files = {}
    for name in meta["files"]:
        member = definition_member(definition_id, f"files/{name}")
        if member not in members:
            raise _rejected("member %(member)s, a file of definition %(definition)s, is not in the bundle",
                            member=member, definition=definition_id)
        files[name] = members[member]
    if content_hash(files) != meta.get("content_hash"):
        raise _rejected("the files of definition %(definition)s (%(process)s version %(version)s) are not the "
                        "ones deployed: their content hash is not the one recorded", definition=definition_id,
                        process=str(meta.get("process_id")), version=str(meta.get("version")))
    try:
        parsed = load_deployed(files, str(meta.get("process_id")), meta.get("known_roles") or [])
    except DefinitionError as exc:
        first = exc.problems[0]
        raise _rejected("definition %(definition)s does not parse: %(problem)s", definition=definition_id,
                        problem=f"{first.file.rsplit('/', 1)[-1]}: {first.message}") from None
    # Stored as `bpm deploy` stores it and restored as runtime.loaded_definition restores it: the
    # order of the restored spec's tasks (sorted keys) is the order every logged step ran in.
    spec, subs = state.load_spec(state.dump_spec(parsed.spec, parsed.subprocess_specs))
    return loaded_from(definition_id, parsed.process_id, int(meta.get("version") or 0), spec, subs,
                       parsed.lane_roles, parsed.forms, files)


# --- the history as a table ------------------------------------------------------------------------------

HISTORY_COLUMNS = ("step", "time", "actor", "command", "task", "data_change", "hash")


def history_rows(steps: list, replayed: bool) -> list[dict]:
    """Each logged step (engine.views.Step) with what it changed in the instance data, as the
    replay found it (`replayed` False: the log did not replay, no change is shown)."""
    return [{"step": s.seq, "at": s.at.isoformat(), "actor": s.actor, "command": s.command,
             "task": s.name or "", "change": {k: after for k, _, after in s.changes} if replayed else None,
             "hash": s.hash, **({"reply": s.input["reply"]} if s.input.get("reply") else {})}
            for s in steps]


def history_csv(rows: list[dict]) -> str:
    """The rows of `history_rows` as comma-separated values with a header row (spreadsheet-safe)."""
    return spreadsheet.text(HISTORY_COLUMNS, (
        [r["step"], r["at"], r["actor"], r["command"], r["task"],
         "" if r["change"] is None else json.dumps(r["change"], ensure_ascii=False, default=str), r["hash"]]
        for r in rows))

"""The instance log read back: hash-chain checks and deterministic replay of the logged inputs."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import state
from .determinism import CommandContext, command_context
from .runtime import GENESIS_HASH, _entry_hash, apply_command, loaded_definition, new_workflow
from .store import Instance, LogEntry


@dataclass(frozen=True)
class ReplayedStep:
    seq: int
    command: str
    recorded_hash: str
    replayed_hash: str
    chain_ok: bool

    @property
    def ok(self) -> bool:
        return self.chain_ok and self.recorded_hash == self.replayed_hash


def replay(session: Session, instance_id: str, script_engine, to_step: int | None = None) -> list[ReplayedStep]:
    """Feed the logged inputs to the pinned definition again and compare every state hash."""
    instance = session.get(Instance, instance_id)
    if instance is None:
        raise LookupError(f"there is no instance {instance_id}")
    loaded = loaded_definition(session, instance.definition_id)
    entries = session.scalars(select(LogEntry).where(LogEntry.instance_id == instance_id)
                              .order_by(LogEntry.seq)).all()
    steps: list[ReplayedStep] = []
    text, counter, prev = None, 0, GENESIS_HASH
    for entry in entries:
        if to_step is not None and entry.seq > to_step:
            break
        inputs = dict(entry.input)
        ctx = CommandContext(instance_id, entry.at, counter, replaying=True,
                             service_results=list(inputs.pop("service_results", [])))
        with command_context(ctx):
            if entry.command == "start":
                workflow = new_workflow(loaded, inputs.get("data") or {}, script_engine)
            else:
                workflow, ctx.counter = state.load_state(text, loaded.spec, loaded.subprocess_specs)
                workflow.script_engine = script_engine
                apply_command(entry.command, workflow, inputs, entry.actor, script_engine)
        text = state.dump_state(workflow, ctx.counter)
        counter = ctx.counter
        replayed_hash = state.digest(text)
        expected_entry = _entry_hash(instance_id, entry.seq, entry.at, entry.actor, entry.command,
                                     entry.input, entry.state_hash, prev)
        chain_ok = entry.prev_hash == prev and entry.hash == expected_entry
        steps.append(ReplayedStep(entry.seq, entry.command, entry.state_hash, replayed_hash, chain_ok))
        prev = entry.hash
    return steps

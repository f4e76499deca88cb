"""The live task tree kept to what an instance still needs: after each command the tree is re-rooted
at the nearest finished ancestor of everything unfinished, and the finished tasks above it are
dropped (what they did is in the log, which has every input). Also the check that SpiffWorkflow's
view of an instance still covers every task it has (`lost_work`).

SpiffWorkflow keeps every task it ever made, so a step of an instance that loops costs more the
longer it lives, and past 1,000 tasks deep its iterator stops seeing the open ones. The cut is a
pure function of the tree, made after the command and before the state is serialised, by the live
command and by its replay alike, so the state hashes in the log stay reproducible.

An instance is pruned only if its start said so (`start`, logged as the start's input `pruned`):
instances started before pruning existed keep their whole tree, and their replays still match.

What is kept, beyond the unfinished tasks and their common ancestor:
* the last completed task (the instance's data is read from it: runtime.instance_data);
* with approval tasks (four-eyes), the task that began each open task's round (tasks.round_of)
  and the latest edit (tasks.editors), so who approved which level of the round is still known;
  in a first round, which began at the tree's root, nothing is cut;
* the split of a structured join still to come (a boundary event's), which the join looks up;
* a root that is a finished task but not a join: SpiffWorkflow's joins read the parent of other
  tasks of their own spec, and an inclusive gateway stops its walk at one.
A tree whose root SpiffWorkflow itself adds to (event subprocesses started by a message or
signal, ad hoc subprocess paths) is not cut. An event subprocess waits beside the whole process,
so it keeps the cut at the top by itself. Pruned tasks that ran a subprocess take their
subprocess with them. How many passes each element made before the cut is kept on the root
(`passes`), for the diagram.
"""
from __future__ import annotations

from collections import Counter

from SpiffWorkflow.bpmn.specs.control import _EndJoin
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.specs.Join import Join
from SpiffWorkflow.util.task import TaskState

from . import tasks as human

MARK = "pruned"  # on the root task's internal data: {"tasks": dropped so far, "passes": {element: n}}
_OPEN = TaskState.READY | TaskState.WAITING | TaskState.STARTED


def start(workflow: BpmnWorkflow) -> None:
    """Mark a new instance as one whose tree is pruned after each command."""
    workflow.task_tree._set_internal_data(**{MARK: {"tasks": 0, "passes": {}}})


def is_pruned(workflow: BpmnWorkflow) -> bool:
    return MARK in workflow.task_tree.internal_data


def passes(workflow: BpmnWorkflow) -> dict[str, int]:
    """Element id -> completed passes that were pruned away."""
    return dict((workflow.task_tree.internal_data.get(MARK) or {}).get("passes") or {})


def prune(workflow: BpmnWorkflow, approval_tasks: frozenset[str] | set[str] = frozenset(),
          submitter_lane: str | None = None) -> int:
    """Cut the tree of a pruned instance (and of each subprocess under way); returns how many
    tasks were dropped. A no-op for an instance started without pruning."""
    if not is_pruned(workflow):
        return 0
    tally = workflow.task_tree.internal_data[MARK]
    done: Counter[str] = Counter(tally.get("passes") or {})
    dropped = 0
    root = _new_root(workflow, approval_tasks, submitter_lane)
    if root is not None:
        dropped += _drop_above(workflow, workflow, root, done)
    for sub in list(workflow.subprocesses.values()):
        if sub.completed or sub.parent_task_id not in _task_ids(workflow):
            continue
        root = _new_root(sub, approval_tasks, submitter_lane)
        if root is not None:
            dropped += _drop_above(workflow, sub, root, done)
    if dropped:
        workflow.task_tree._set_internal_data(**{MARK: {
            "tasks": int(tally.get("tasks") or 0) + dropped, "passes": dict(sorted(done.items()))}})
    return dropped


def _task_ids(workflow: BpmnWorkflow) -> set:
    ids = set(workflow.tasks)
    for sub in workflow.subprocesses.values():
        ids.update(sub.tasks)
    return ids


def _new_root(tree, approval_tasks, submitter_lane):
    """Where `tree` may be re-rooted, or None to leave it whole."""
    spec = tree.spec
    if getattr(spec.start, "trigger_specs", None) or getattr(spec, "conditional_paths", None):
        return None  # SpiffWorkflow adds tasks under the root of such a tree
    # A branch that reached an end event leaves a task of the process's End join under it: it does
    # not hold the cut (its branch is moved under the new root, see _drop_above).
    unfinished = [t for t in tree.tasks.values()
                  if t.has_state(TaskState.NOT_FINISHED_MASK) and not _ended(t)]
    if not unfinished:
        return None
    keep = list(unfinished)
    last = tree.last_task
    if last is not None and last.id in tree.tasks:
        keep.append(last)
    if approval_tasks:
        for task in unfinished:
            began = human.round_of(task, submitter_lane)
            if began is None:
                return None  # a first round: its levels reach back to the root
            keep.append(tree.tasks[began])
        edit = _latest_edit(tree, approval_tasks)
        if edit is not None:
            keep.append(edit)
    for task in unfinished:
        split = getattr(task.task_spec, "split_task", None)
        if split:
            found = _ancestor_named(task, split)
            if found is None:
                return None
            keep.append(found)
    root = _common_ancestor(keep)
    while root is not None and (root.state != TaskState.COMPLETED or isinstance(root.task_spec, Join)):
        root = root.parent
    if root is None or root is tree.task_tree:
        return None
    return root


def _ended(task) -> bool:
    """A task of the End join, or predicted under one (the workflow's own End)."""
    return isinstance(task.task_spec, _EndJoin) or (
        task.parent is not None and isinstance(task.parent.task_spec, _EndJoin))


def _latest_edit(tree, approval_tasks):
    """The task tasks.editors names as the last edit (the latest completed non-approval user task)."""
    found, latest = None, -1.0
    for task in tree.tasks.values():
        if task.state == TaskState.COMPLETED and task.task_spec.manual \
                and task.task_spec.name not in approval_tasks and task._get_internal_data("completed_by") \
                and task.last_state_change >= latest:
            found, latest = task, task.last_state_change
    return found


def _ancestor_named(task, spec_name: str):
    parent = task.parent
    while parent is not None and parent.task_spec.name != spec_name:
        parent = parent.parent
    return parent


def _common_ancestor(found: list):
    chain, task = [], found[0]
    while task is not None:
        chain.append(task)
        task = task.parent
    place = {t.id: n for n, t in enumerate(chain)}
    highest = 0
    for task in found[1:]:
        while task is not None and task.id not in place:
            task = task.parent
        if task is None:
            return None  # not one tree: leave it alone
        highest = max(highest, place[task.id])
    return chain[highest]


def _drop_above(top: BpmnWorkflow, tree, root, done: Counter) -> int:
    """Make `root` the root of `tree`, dropping every task not under it — but for the ends of
    branches that reached an end event, which are moved under it.

    The process's End join merges, when the instance ends, the data of every branch that ended
    before (the parents of its other tasks, waiting or finished): each such end event, with its
    End task, is kept as a child of the new root, and moved to the end of the task mapping so it
    is restored after its new parent (a task's data is stored as a change of its parent's)."""
    kept = _under(tree, root)
    ends = [t for t in tree.tasks.values() if isinstance(t.task_spec, _EndJoin) and t.id not in kept]
    moved = []
    for end in ends:
        branch = end.parent
        if branch is None or branch.id in moved:
            continue
        if any(not isinstance(c.task_spec, _EndJoin) for c in branch.children):
            return 0  # not the end of a branch: leave the tree whole
        moved.append(branch.id)
    for branch_id in moved:
        branch = tree.tasks[branch_id]
        branch._parent = root.id
        root._children.append(branch_id)
        for task_id in _under(tree, branch):  # parents before children
            kept[task_id] = None
            tree.tasks[task_id] = tree.tasks.pop(task_id)
    gone = [t for t in tree.tasks.values() if t.id not in kept]
    for task in gone:
        _count(task, done)
        top.event_manager.remove_task(task)
        if task.id in top.subprocesses:
            _drop_subprocess(top, task.id, done)
    for task in gone:
        del tree.tasks[task.id]
    mark = tree.task_tree.internal_data.get(MARK) if tree is top else None
    root._parent = None
    tree.task_tree = root
    if mark is not None:
        root._set_internal_data(**{MARK: mark})
    return len(gone)


def _under(tree, root) -> dict:
    """The ids of `root` and every task under it, parents before children (a dict: ordered)."""
    kept, stack = {}, [root.id]
    while stack:
        task_id = stack.pop()
        kept[task_id] = None
        stack.extend(reversed(tree.tasks[task_id]._children))
    return kept


def _drop_subprocess(top: BpmnWorkflow, task_id, done: Counter) -> None:
    sub = top.subprocesses.pop(task_id)
    for task in sub.tasks.values():
        _count(task, done)
        top.event_manager.remove_task(task)
        if task.id in top.subprocesses:
            _drop_subprocess(top, task.id, done)


def _count(task, done: Counter) -> None:
    element = getattr(task.task_spec, "bpmn_id", None)
    if element and task.state == TaskState.COMPLETED:
        done[element] += 1


# --- the guard ------------------------------------------------------------------------------------

def lost_work(workflow: BpmnWorkflow):
    """A task with work left that SpiffWorkflow's own view of the instance misses, or None.

    SpiffWorkflow finds tasks by walking the tree from its root, at most 1,000 deep; the instance's
    status and its projection (open user tasks, timers, message waits) come from that walk. Every
    task is also in the workflow's `tasks` mapping: if the mapping has an open task the walk does
    not reach — or the workflow says it is completed while one is open — the instance would be
    reported wrongly (completed, or without its open task), so the command must not commit."""
    seen = {t.id for t in workflow.get_tasks(state=_OPEN)}
    completed = workflow.is_completed()
    for tree in (workflow, *workflow.subprocesses.values()):
        if tree is not workflow and _finished_parent(workflow, tree):
            continue  # the subprocess of a finished (or cancelled) step: nothing waits in it
        for task in tree.tasks.values():
            if task.has_state(_OPEN) and (completed or task.id not in seen):
                return task
    return None


def _finished_parent(workflow: BpmnWorkflow, sub) -> bool:
    owner = workflow.get_task_from_id(sub.parent_task_id) if sub.parent_task_id in _task_ids(workflow) else None
    return owner is None or owner.has_state(TaskState.FINISHED_MASK)

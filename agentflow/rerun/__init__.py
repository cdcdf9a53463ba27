"""Re-executing stored runs: replay (tape, verify) and resume, as run plans over the runtime.

Replay a run and compare it with its recording::

    report = await replay_run(store, run_id, mode="tape")   # nothing executes; report.identical, .divergence

Continue a resumable run whose process died::

    result = await resume_run(store, run_id)

Fork a run after its 15th step into 8 continuations that go on live::

    results = await fork_run(store, run_id, at=15, n=8)
"""

from agentflow.rerun._fork import Fork, ForkPlan, ForkPoint, Step, first_error_step, fork_run, steps_of
from agentflow.rerun._rebuild import Rebuilt, rebuild_sandbox
from agentflow.rerun._recorded import RecordedRun, ServedModel
from agentflow.rerun._replay import ReplayMode, ReplayReport, Tape, TapePlan, TapeSandbox, VerifyPlan, replay_run
from agentflow.rerun._resume import ResumePlan, ResumePoint, resume_run

__all__ = [
    "Fork",
    "ForkPlan",
    "ForkPoint",
    "Rebuilt",
    "RecordedRun",
    "ReplayMode",
    "ReplayReport",
    "ResumePlan",
    "ResumePoint",
    "ServedModel",
    "Step",
    "Tape",
    "TapePlan",
    "TapeSandbox",
    "VerifyPlan",
    "first_error_step",
    "fork_run",
    "rebuild_sandbox",
    "replay_run",
    "resume_run",
    "steps_of",
]

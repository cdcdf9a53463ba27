"""Re-executing stored runs: replay (tape, verify) and resume, as run plans over the runtime.

Replay a run and compare it with its recording::

    report = await replay_run(store, run_id, mode="tape")   # nothing executes; report.identical, .divergence

Continue a resumable run whose process died::

    result = await resume_run(store, run_id)
"""

from agentflow.rerun._recorded import RecordedRun
from agentflow.rerun._replay import ReplayMode, ReplayReport, Tape, TapePlan, TapeSandbox, VerifyPlan, replay_run
from agentflow.rerun._resume import ResumeModel, ResumePlan, ResumePoint, resume_run

__all__ = [
    "RecordedRun",
    "ReplayMode",
    "ReplayReport",
    "ResumeModel",
    "ResumePlan",
    "ResumePoint",
    "Tape",
    "TapePlan",
    "TapeSandbox",
    "VerifyPlan",
    "replay_run",
    "resume_run",
]

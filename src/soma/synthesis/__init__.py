"""Persona synthesis: search for the persona that does a capsule best, scored on its evals.

``soma persona synthesize`` drives it: a generator model proposes candidate personas
(:mod:`~soma.synthesis.candidates`), each is scored by running the capsule's evals with it
(:mod:`~soma.synthesis.scoring`), and the loop (:mod:`~soma.synthesis.optimizer`) feeds the
best candidate and the others' failed checks back for the next round. The winner is written to
the library and optionally published, signed, with its scores (:mod:`~soma.synthesis.publish`).
See docs/persona_synthesis.md.
"""

from soma.synthesis.candidates import CandidateDraft, Feedback, generate_candidates
from soma.synthesis.optimizer import (
    SynthesisError,
    SynthesisResult,
    SynthesisSpec,
    check_request,
    persona_tools,
    synthesize,
)
from soma.synthesis.scoring import CandidateScore, CaseScore, build_persona, score_persona

__all__ = [
    "CandidateDraft",
    "CandidateScore",
    "CaseScore",
    "Feedback",
    "SynthesisError",
    "SynthesisResult",
    "SynthesisSpec",
    "build_persona",
    "check_request",
    "generate_candidates",
    "persona_tools",
    "score_persona",
    "synthesize",
]

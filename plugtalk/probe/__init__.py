"""The probe: find which intermediate value of an animator carries identity, by activation patching.

For source/driving pairs, every *tap* (a named intermediate value: each feature-pyramid level, the
latent, the motion code, or any module output of any ``nn.Module``) is swapped between the source and
the driving branch, the output is re-rendered and scored: identity shift (CSIM to driver minus CSIM
to source), motion fidelity (LMD to the driving frame) and quality (NIQE / CPBD deltas), over self-
and cross-reenactment pairs.  FixTalk (ICCV 2025, main paper Sec. 3.2, suppl. Sec. 2.7) ran this by
hand on EDTalk and found the 32x32 map ``f_4``; the probe runs it on any animator.

>>> from plugtalk.probe import probe_animator
>>> result = probe_animator(plugtalk.backbones.create("lia"), source, driving, kinds=["cross"] * len(source))
>>> result.variants[0].variant.key          # the tap that moves identity most
"""

from .api import (
    ProbeWarning,
    as_animator,
    describe_taps,
    encoder_path,
    load_animator,
    probe_animator,
    probe_controlled,
    probe_module,
    run_probe,
)
from .pairs import identity_of, load_pair_frames, pairs_from_files, pairs_from_folder, usable_pairs_from_folder
from .controlled import TwoSourceRun, controlled_taps
from .patching import PatchOutputs, ReplayError, auto_batch_size, count_images, record, replay, run_patching
from .reach import inert_variants, unreachable_sites
from .report import REPORT_FILES, ranking_table, write_chart, write_grid, write_json, write_report
from .results import ProbeResult, Scores, VariantResult
from .scoring import FaceScorer, References, Scorer
from .spec import PairSpec, ProbeSpec, load_spec, probe_backbones
from .taps import DIRECTIONS, TapInfo, TapSpec, Variant, animator_groups, animator_taps, unpaired_taps

__all__ = [
    "probe_backbones",
    "DIRECTIONS",
    "REPORT_FILES",
    "FaceScorer",
    "PairSpec",
    "PatchOutputs",
    "ProbeResult",
    "ProbeSpec",
    "ProbeWarning",
    "References",
    "ReplayError",
    "Scorer",
    "Scores",
    "TapInfo",
    "TapSpec",
    "Variant",
    "VariantResult",
    "animator_groups",
    "animator_taps",
    "as_animator",
    "auto_batch_size",
    "count_images",
    "describe_taps",
    "encoder_path",
    "identity_of",
    "inert_variants",
    "load_animator",
    "load_pair_frames",
    "load_spec",
    "pairs_from_files",
    "pairs_from_folder",
    "probe_animator",
    "probe_controlled",
    "TwoSourceRun",
    "controlled_taps",
    "probe_module",
    "ranking_table",
    "record",
    "replay",
    "run_patching",
    "run_probe",
    "unpaired_taps",
    "unreachable_sites",
    "usable_pairs_from_folder",
    "write_chart",
    "write_grid",
    "write_json",
    "write_report",
]

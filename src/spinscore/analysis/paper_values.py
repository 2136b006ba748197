"""The numbers the paper's two releases quote (Xi & Chen 2026; SPEC §8, §8b), for the tables
that put ours beside theirs. Paper system only (six couplings in the order J1_AA .. J2_AB)."""

# The published model's ratio table (Table 1) and headline metrics, OLS at t = 1e-4.
PUBLISHED_RATIOS = {"J1_AA": 1.0, "J1_BB": 0.621, "J1_AB": 0.876, "J2_AA": -0.464,
                    "J2_BB": -0.293, "J2_AB": -0.378}
PUBLISHED_METRICS = {"cosine": 0.9974, "r2": 0.8698, "worst_ratio_error": 0.12}

# The revised release: direct-W metrics of its epoch-26 checkpoint on 2 000 x 5 test
# snapshots at t = 1e-4 (definitions in analysis.readout.DirectWStats.metrics).
REVISED_DIRECT_W = {"pearson": 0.9929, "a_star": 10.62, "a_star_over_beta": 0.531,
                    "class_ratio_relative_rms": 0.181, "pointwise_relative_rmse": 0.161,
                    "configuration_relative_rms": 0.0404, "support_share": 0.850}
# Direct-W metrics where larger is better; the rest are errors (smaller is better).
DIRECT_W_HIGHER_IS_BETTER = ("pearson", "a_star_over_beta", "support_share")

REVISED_IDENTIFIABILITY = {"condition_number": 3.81, "eigenvalues": [49.2, 714.6],
                           "weakest": [1.0, 0.459, 0.656, -0.431, -0.236, -0.305],
                           "weakest_cosine_to_truth": 0.997}
REVISED_MIXING = {"lag_1": 0.5095, "lag_1_ci95": [0.5062, 0.5126], "independent": 0.5081,
                  "independent_ci95": [0.5051, 0.5111], "sequences": 2000}


# The paper's couplings (SPEC §2), in units of J.
PAPER_COUPLINGS = {"J1_AA": 1.0, "J1_BB": 0.5, "J1_AB": 0.8, "J2_AA": -0.45, "J2_BB": -0.25,
                   "J2_AB": -0.35}


def is_paper_system(parameter_names: list[str], truth) -> bool:
    """Whether a readout's couplings (names and true values, as in extraction.json) are the
    paper's, so that its published numbers apply (another system with the same type names
    and ranges, e.g. the square preset, is not)."""
    return (set(parameter_names) == set(PAPER_COUPLINGS)
            and all(abs(PAPER_COUPLINGS[n] - float(j)) < 1e-12
                    for n, j in zip(parameter_names, truth, strict=True)))

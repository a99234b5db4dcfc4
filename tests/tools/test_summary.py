"""The summary tool prints the Keras-applications columns with measured values."""

from efficientnet_jax.tools import summary


import pytest


@pytest.mark.parametrize("form", summary.FORMS)
def test_summary_row_has_measured_columns(form):
    row = summary.summarize("efficientnet_lite0", batch=1, timing=True, backends=["cpu"], form=form)
    assert row["params"] == 4_652_008 and row["gmacs"] == 0.385 and row["resolution"] == 224
    assert row["size_mb"] > 17 and row["depth"] > 40
    assert row["cpu_ms"] > 0 and row["cpu_compile_s"] > 0
    # Memory counts the weights in both forms (deployed: compiled-in constants, outside XLA's plan).
    assert row["cpu_mem_mb"] > 0.9 * row["size_mb"]
    assert row["top1"] == 75.1 and "Lite" in row["top1_source"]


def test_summary_rejects_unknown_form():
    with pytest.raises(ValueError, match="form must be one of"):
        summary.time_inference(summary.create_model("efficientnet_lite0"), 32, 1, summary.jax.devices("cpu")[0],
                               form="served")


def test_summary_cli_csv(capsys):
    assert summary.main(["efficientnet_b0", "efficientnetv2_s", "--no-timing", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("model,size_mb,params")
    assert lines[2].startswith("efficientnet_b0,") and ",5288548," in lines[2] and ",0.386," in lines[2]
    assert ",21458488," in lines[3] and ",8.366," in lines[3]

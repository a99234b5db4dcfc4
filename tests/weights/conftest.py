"""tests/weights: print the measured parity table at the end of the run."""

import parity_harness


def pytest_terminal_summary(terminalreporter):
    if not parity_harness.RESULTS:
        return
    tr = terminalreporter
    tr.section("weight-import parity: max |logit_ours - logit_ref|")
    for source, model, note, d, scale in parity_harness.RESULTS:
        tr.write_line(f"{source:<20} {model:<24} {note:<30} {d:.2e}   (mean |logit| {scale:.2f})")

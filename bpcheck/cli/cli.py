"""The ``bpcheck`` command line: ``report``, ``merge``, ``validate``, ``check``, ``op``, ``selftest``, ``export-vectors``.

Each command lives beside the code it drives (bpcheck.report.report, bpcheck.cli.validate);
this module only gathers them, so ``bpcheck --help`` starts fast.
"""
import click

from bpcheck import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bpcheck")
def main():
    """Verify backpropagation: the NumPy reference, PyTorch and JAX, or your own code."""


def _register():
    from bpcheck.cli.check import check_command
    from bpcheck.cli.selftest import selftest_command
    from bpcheck.cli.validate import export_vectors_command, validate_command
    from bpcheck.opcheck.cli import op_command
    from bpcheck.opcheck.graph_cli import graph_command
    from bpcheck.cli.train import train_command
    from bpcheck.report.merge import merge_command
    from bpcheck.cli.report import report_command
    main.add_command(report_command, "report")
    main.add_command(merge_command, "merge")
    main.add_command(validate_command, "validate")
    main.add_command(check_command, "check")
    main.add_command(op_command, "op")
    main.add_command(graph_command, "graph")
    main.add_command(train_command, "train")
    main.add_command(selftest_command, "selftest")
    main.add_command(export_vectors_command, "export-vectors")


_register()

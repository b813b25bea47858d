"""On-device export: TFLite formats, interpreter parity, Android bundle and report.

>>> from fl_sim.export import ExportOptions, export_run            # doctest: +SKIP
>>> export_run("results/demo/20261123-101500-s0", ExportOptions())   # doctest: +SKIP

Modules: :mod:`~fl_sim.export.signatures` (the exported tf.Modules), :mod:`~fl_sim.export.convert`
(formats), :mod:`~fl_sim.export.compact` (the converted file without duplicated tables),
:mod:`~fl_sim.export.runtime` (does a file run with LiteRT's defaults),
:mod:`~fl_sim.export.tflite_file` (reading a flatbuffer), :mod:`~fl_sim.export.parity`
(interpreter vs Keras), :mod:`~fl_sim.export.bundle` (vocab.txt, metadata.json),
:mod:`~fl_sim.export.report`, :mod:`~fl_sim.export.runs` (run directories) and
:mod:`~fl_sim.export.cli` (``fl-sim export``). TensorFlow is imported only by the modules
that need it.
"""

from fl_sim.export.formats import FORMATS
from fl_sim.export.pipeline import ExportOptions, export_model, export_run
from fl_sim.export.runs import ExportError

__all__ = ["FORMATS", "ExportError", "ExportOptions", "export_model", "export_run"]

"""Convert the SSD MobileNet v2 COCO frozen graph to ONNX. Runs in the conversion venv only.

Run as a file (``<tf-venv>/bin/python labelkit/labelers/tf_convert.py ...``), never imported by
the app: it needs TensorFlow and tf2onnx, which live in their own venv
(``data/build/tf-venv``, made by :mod:`labelkit.labelers.detect_build`) so that their
numpy/protobuf pins never meet the app's. It imports nothing from labelkit for the same
reason (running it as a file does not import the ``labelkit`` package either).

Writes three files:

* the ONNX graph of the network part: input ``Preprocessor/sub:0`` (N, 300, 300, 3) float
  (``x * 2/255 - 1``), outputs ``Squeeze:0`` (N, 1917, 4) box encodings and
  ``Postprocessor/convert_scores:0`` (N, 1917, 91) sigmoid class scores;
* the 1,917 anchors (``Concatenate/concat:0``, ymin/xmin/ymax/xmax) as ``.npy``;
* TensorFlow's own outputs for the inputs in ``--samples`` (``.npz``), so the caller can
  check onnxruntime against TensorFlow before the files get their final names.

Deterministic when ``PYTHONHASHSEED`` is fixed (tf2onnx names constants from counters
that depend on set order): the caller sets it.
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter

INPUT = "Preprocessor/sub:0"
OUTPUTS = ["Squeeze:0", "Postprocessor/convert_scores:0"]
ANCHORS = "Concatenate/concat:0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pb", required=True)
    parser.add_argument("--onnx", required=True, help="where to write the ONNX graph")
    parser.add_argument("--anchors", required=True, help="where to write the anchors (.npy)")
    parser.add_argument("--samples", required=True, help="npz with 'images': (N, 300, 300, 3) uint8")
    parser.add_argument("--reference", required=True, help="where to write TensorFlow's outputs (.npz)")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import numpy as np
    import tensorflow as tf
    import tf2onnx

    graph_def = tf.compat.v1.GraphDef()
    with open(args.pb, "rb") as fh:
        graph_def.ParseFromString(fh.read())

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    images = np.load(args.samples)["images"]
    with tf.compat.v1.Session(graph=graph) as session:
        anchors = session.run(ANCHORS, {"image_tensor:0": images[:1]})
        x = images.astype(np.float32) * (2.0 / 255.0) - 1.0
        encodings, scores = session.run(OUTPUTS, {INPUT: x})
    np.save(args.anchors, anchors.astype(np.float32))
    np.savez(args.reference, encodings=encodings, scores=scores)

    tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=[INPUT],
        output_names=OUTPUTS,
        opset=args.opset,
        shape_override={INPUT: [None, 300, 300, 3]},  # any batch size
        output_path=args.onnx,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

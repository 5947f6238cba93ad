"""The runtime contract: how a model file is opened, read and fed, defined once for every tl-edge tool.

Lives here: choosing the TFLite runtime and building interpreters (`runtime`), reading what a model
file says about itself — labels, input spec, variant (`metadata`; the standard TFLITE_METADATA record
in `tflite_metadata`, the model FlatBuffer's metadata entries in `tflite_model`, both by field slot over
`flatbuf`), decoding and resizing an image or a
frame into the input tensor (`image`, `contract`), reading scores and the embedding out of it
(`outputs`), and the per-frame `Classifier` built on those. `tl.train` and `tl.convert` import this room
so that training, calibration, checks and the device feed the model the same way.
May import: `tl.device.errors`, numpy, OpenCV, flatbuffers, a TFLite runtime. Never TensorFlow.
"""

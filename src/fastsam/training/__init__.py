"""Training and fine-tuning of FastSAM (YOLOv8-seg, one class): data, loss, assigner and training loop.

The modules are imported where used (``fastsam.training.loss``, ``.assigner``, ``.trainer``, ...): this package
itself imports nothing, so that the command line can read :data:`.records.DATA_FORMATS` without loading torch.
:mod:`.trainer` needs the ``train`` extra (``pycocotools``, ``tqdm``, ``opencv-python``); :mod:`.loss` and
:mod:`.assigner` need torch alone.
"""

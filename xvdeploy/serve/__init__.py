"""Serving: a Triton model repository from every export or build, ``xvdeploy serve`` on Ray Serve, ``loadtest``.

Modules: ``triton_repo`` (``config.pbtxt`` through Triton's own protobuf
schema, from the file's header as :mod:`xvdeploy.export.onnxfile` reads it;
versioned model folders), ``wire`` (tensors over HTTP: ``.npy`` and JSON bodies, request
checks), ``app`` (the Ray Serve deployment and its start/stop), ``loadtest``
(bounded loopback load with parity against a local onnxruntime run).

ray and tritonclient are optional (``pip install 'xvdeploy[serve]'``) and
imported only where used.
"""

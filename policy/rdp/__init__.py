"""Reactive Diffusion Policy: asymmetric tokenizer, latent diffusion, DP baseline.

Entry points (import the submodule; nothing heavy is imported here):

* ``policy.rdp.runtime``: ``DecoderRuntime``, ``SlowPolicyRuntime`` (onnxruntime) and their
  torch twins, plus ``relative_to_absolute`` - what the control loops call.
* ``policy.rdp.train.train``, ``policy.rdp.export.export_checkpoint`` - behind
  ``slowfast train`` and ``slowfast export``.
* ``policy.rdp.dataset`` - the LeRobot-v3 reader; ``slowfast_data.writer`` writes it.

See README.md in this folder for the dataset contract and the runtime's inputs and outputs.
"""

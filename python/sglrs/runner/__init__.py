"""Runs the model on the scheduler's StepPlan: ForwardBatch (device view of a plan) and
ModelRunner (model + KV pool + request-to-token table + attention backend)."""

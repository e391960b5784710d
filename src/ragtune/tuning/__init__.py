"""Fine-tuning: labelled data in, calibrated specialist classifiers out (audit, train, evaluate, register)."""

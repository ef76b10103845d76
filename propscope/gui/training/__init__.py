"""The Training dock: the optimizer form, the runner on its worker thread, the loss, gradient-health and output
plots, the data form, and the frame budget that keeps drawing from starving the worker."""

"""After deployment: how live traffic compares with the training-time reference (drift), and
what accuracy the calibrated probabilities predict when no labels have arrived."""

"""What evaluate, export and serve share to answer for an image: the predictors (a run's
weights or an ONNX file, behind one interface) and Grad-CAM. Below all three, so none of them
imports another for it."""

"""Training data: raw videos -> face-cropped clips (:mod:`.prepare`) and reenactment datasets (:mod:`.datasets`)."""

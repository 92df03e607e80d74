"""The built-in recipes, shipped inside the package (the repository keeps them at the top, in recipes/)."""

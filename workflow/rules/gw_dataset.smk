# gw dataset rules (added with the stage).

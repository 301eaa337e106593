# gw inference rules (added with the stage).

# gw train rules (added with the stage).

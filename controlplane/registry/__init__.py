"""The image registry as the control plane sees it: the token endpoint (`/v2/token`) that
authenticates people, robot accounts and the platform and decides their access, and the robot
accounts' page."""

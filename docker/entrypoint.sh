#!/bin/bash
# Source ROS 2 and the RPL workspace, then run the command (default: the SlipperyPush stack).
set -e
source "/opt/ros/${ROS_DISTRO}/setup.bash"
source /ws/install/setup.bash
exec "$@"

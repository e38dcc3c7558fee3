#!/bin/sh
# Build the sensorhub Mosquitto auth plugin (mosquitto-plugin/sensorhub_auth.c) into
# mosquitto-plugin/sensorhub_auth.so. Installs the build dependencies with apt-get when missing (as root):
# mosquitto-dev + libmosquitto-dev (plugin headers), libcurl4-openssl-dev (HTTP), libcjson-dev (JSON).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/mosquitto-plugin/sensorhub_auth.c"
out="$here/mosquitto-plugin/sensorhub_auth.so"
have_headers() {
  printf '#include <mosquitto_broker.h>\n#include <mosquitto_plugin.h>\n#include <mqtt_protocol.h>\n#include <curl/curl.h>\n#include <cjson/cJSON.h>\n' |
    cc -E -x c - >/dev/null 2>&1
}
if ! command -v cc >/dev/null 2>&1 || ! have_headers; then
  if [ "$(id -u)" != 0 ]; then
    echo "build_mosquitto_plugin: as root, run: apt-get install mosquitto-dev libmosquitto-dev libcurl4-openssl-dev libcjson-dev gcc" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    mosquitto-dev libmosquitto-dev libcurl4-openssl-dev libcjson-dev gcc libc6-dev >&2
fi
cc -O2 -Wall -Wextra -Werror -fPIC -shared -o "$out.tmp" "$src" -lcurl -lcjson
mv "$out.tmp" "$out"
echo "$out"

# The link profiles of the benchmarks (docs/bench-fetch.md, docs/link-proxy.md),
# sourced by bench/fetch.sh, bench/send.sh and bench/round-trips.sh:
# `profile_args NAME` prints examples/link_proxy's rate and RTT options.
#   modem  1 Mbit/s down, 256 kbit/s up, 100 ms RTT
#   dsl   10 Mbit/s down,   1 Mbit/s up,  40 ms RTT
#   lan  100 Mbit/s both ways, 2 ms RTT
profile_args() {
  case $1 in
    modem) echo "--down-bps 1000000 --up-bps 256000 --rtt-ms 100" ;;
    dsl) echo "--down-bps 10000000 --up-bps 1000000 --rtt-ms 40" ;;
    lan) echo "--down-bps 100000000 --up-bps 100000000 --rtt-ms 2" ;;
    *) echo "unknown profile $1" >&2; exit 1 ;;
  esac
}

#!/bin/bash
# End-to-end spike: kamailio + pjsua2 agent + SIPp caller + SIPp staff phones.
# Usage: ./run.sh [e2e|noanswer|load] [--threads]
#   e2e      : 1 call; caller sends RFC2833 '4' + INFO '1' -> agent dials sip:staff@ (answers, sends '1', BYE)
#   noanswer : 1 call; INFO '1' -> agent dials sip:noanswer@ (180 forever) -> agent CANCELs after 5 s
#   load     : 20 simultaneous callers (-l 20 -m 20), no dialing; checks every call got both digits
set -u
D=/tmp/sipspike; R=$D/run; cd $D
MODE=${1:-e2e}; AGENTOPT=${2:-}
mkdir -p $R; rm -f $R/*.log $D/rec/*.wav $D/stats*.json
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

# 1) Kamailio in foreground mode (no daemon), own runtime dir
kamailio -f ${KAMCFG:-$D/kamailio.cfg} -DD -E -Y $R -P $R/kamailio.pid -w $R -m 64 -M 8 > $R/kam.log 2>&1 &
PIDS+=($!); sleep 1

# 2) staff phones (SIPp UAS) on 5090 (answers) and 5091 (never answers)
sipp -sf $D/uas_staff.xml    -i 127.0.0.1 -p 5090 -mi 127.0.0.1 -mp 6100 -nostdin -trace_msg -message_file $R/staff_msg.log -trace_err -error_file $R/staff_err.log > $R/staff.out 2>&1 &
PIDS+=($!)
sipp -sf $D/uas_noanswer.xml -i 127.0.0.1 -p 5091 -mi 127.0.0.1 -mp 6200 -nostdin -trace_msg -message_file $R/noans_msg.log -trace_err -error_file $R/noans_err.log > $R/noans.out 2>&1 &
PIDS+=($!)

# 3) agent
case $MODE in
  e2e)      DIAL="--dial sip:staff@127.0.0.1:5060";    N=1;  DUR=16 ;;
  noanswer) DIAL="--dial sip:noanswer@127.0.0.1:5060 --ring-timeout ${RING_TIMEOUT:-5}"; N=1; DUR=16 ;;
  load)     DIAL="";                                   N=20; DUR=20 ;;
esac
if [ $MODE = load ]; then
  # the PyPI wheel caps pjsua at 4 simultaneous calls per process -> 5 processes x 4 calls
  APIDS=()
  for i in 1 2 3 4 5; do
    $D/venv/bin/python $D/agent.py ${AGENTLOG:-} $AGENTOPT --user agent$i --port $((5070+i)) --rtp-port $((40000+1000*i)) \
        --stats $D/stats_$i.json --duration $DUR > $R/agent$i.log 2>&1 &
    APIDS+=($!); PIDS+=($!)
  done
  USERS=$D/users20.csv
else
  $D/venv/bin/python $D/agent.py ${AGENTLOG:-} $AGENTOPT $DIAL --duration $DUR > $R/agent.log 2>&1 &
  APIDS=($!); PIDS+=($!); USERS=$D/users1.csv
fi
sleep 1.5

# 4) caller(s): SIPp UAC via Kamailio to the registered 'agent'
HOLD=$([ $MODE = e2e ] && echo 8000 || echo 3000); [ $MODE = noanswer ] && HOLD=8000
sipp 127.0.0.1:5060 -sf $D/uac_caller.xml -inf $USERS -i 127.0.0.1 -p 5061 -mi 127.0.0.1 -mp 6000 \
     -key dinfo 1 -d $HOLD -m $N -l $N -r $N -rp 1000 -nostdin \
     -trace_msg -message_file $R/uac_msg.log -trace_err -error_file $R/uac_err.log -trace_stat -stf $R/uac_stat.csv \
     > $R/uac.out 2>&1
echo "sipp UAC exit code: $? (0 = all calls OK)"
wait "${APIDS[@]}"
[ $MODE != load ] && grep -v '^[0-9][0-9]:[0-9][0-9]:' $R/agent.log | tail -40
$D/venv/bin/python $D/report.py $MODE

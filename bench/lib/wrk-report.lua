-- wrk script: after the run, one JSON line with what bench/run.sh records (latency in microseconds).
-- The request itself is wrk's default GET with the -H headers given on the command line.
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '\nBENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"non2xx":%d,"timeouts":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout))
end

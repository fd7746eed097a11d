/*
 * The benchmark's open-loop load generator: every proxy gets the same offered load, so that their
 * latencies can be compared "at the same load" (issue #7). wrk is a closed loop: each connection sends
 * its next request when the previous answer arrives, so a slower proxy is offered less load, and its
 * p99 mostly restates its throughput.
 *
 *   loadgen PORT PATH RATE DURATION WARMUP CONNECTIONS [HEADER ...]
 *
 * Requests are scheduled at a constant rate (request i at start + i / RATE; a timerfd releases them),
 * sent over CONNECTIONS keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, one request in flight per
 * connection. A request whose time has come while every connection is busy waits for the next free
 * one, and its latency is counted from its scheduled time, not from when it was sent: a stall shows
 * up in the percentiles instead of being hidden (what wrk2 calls coordinated omission). Requests
 * scheduled during the first WARMUP seconds are sent but not recorded. After WARMUP + DURATION seconds
 * no more are scheduled; what is still unanswered 5 seconds later counts as a timeout.
 *
 * Prints one line: BENCH_RESULT {json} with microsecond percentiles of the recorded requests. Exits 2 on
 * bad arguments, 1 if it cannot connect at all or no request was answered. Single thread, epoll; built by bench/run.sh (gcc -O2).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 1024
#define READ_BUFFER 65536

typedef struct {
    int fd;
    int busy;               /* a request is in flight */
    int64_t scheduled_ns;   /* its scheduled time */
    int recorded;           /* whether its latency counts (scheduled after the warm-up) */
    size_t have;            /* bytes of the current response in buf */
    char buf[READ_BUFFER];
} connection;

static connection conns[MAX_CONNECTIONS];
static int port, nconns;
static char *request;
static size_t request_len;
static int epfd;

static uint32_t *latencies;   /* microseconds, recorded requests */
static size_t nlat, cap_lat;
static uint64_t sent, completed, non2xx, errors, reconnects, late;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int open_connection(connection *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    c->fd = fd;
    c->busy = 0;
    c->have = 0;
    return 0;
}

static void record(connection *c, int64_t done_ns) {
    if (!c->recorded) return;
    int64_t us = (done_ns - c->scheduled_ns) / 1000;
    if (us < 0) us = 0;
    if (nlat < cap_lat) latencies[nlat++] = (uint32_t)(us > UINT32_MAX ? UINT32_MAX : us);
}

/* A failed connection: its request (if any) is an error; a new connection takes its place. */
static void fail(connection *c) {
    if (c->busy) errors++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    reconnects++;
    if (open_connection(c) < 0) c->fd = -1;
}

/* Sends a request on an idle connection (the request is small: one write fits the socket buffer). */
static int send_request(connection *c, int64_t scheduled_ns, int recorded) {
    ssize_t n = write(c->fd, request, request_len);
    if (n != (ssize_t)request_len) {
        /* a connection still connecting: try another one now, this one later */
        if (n < 0 && (errno == EAGAIN || errno == ENOTCONN)) return -1;
        errors++;
        fail(c);
        return -1;
    }
    c->busy = 1;
    c->scheduled_ns = scheduled_ns;
    c->recorded = recorded;
    c->have = 0;
    sent++;
    return 0;
}

/* Is a whole response in buf? Returns its length, 0 if more is needed, -1 if it cannot be parsed. */
static ssize_t response_length(connection *c, int *status, int *close_after) {
    char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
    if (!end) return c->have >= READ_BUFFER ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (c->have < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->buf + 9);
    *close_after = 0;
    long content_length = -1;
    int chunked = 0;
    for (char *line = memchr(c->buf, '\n', head) + 1; line < c->buf + head - 2;) {
        char *next = memchr(line, '\n', (size_t)(c->buf + head - line));
        if (!next) break;
        if (strncasecmp(line, "content-length:", 15) == 0) content_length = strtol(line + 15, NULL, 10);
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0) chunked = memmem(line, (size_t)(next - line), "chunked", 7) != NULL;
        else if (strncasecmp(line, "connection:", 11) == 0) *close_after = memmem(line, (size_t)(next - line), "close", 5) != NULL;
        line = next + 1;
    }
    if (chunked) {
        char *last = memmem(c->buf + head, c->have - head, "0\r\n\r\n", 5);
        if (!last) return c->have >= READ_BUFFER ? -1 : 0;
        return (last - c->buf) + 5;
    }
    if (content_length < 0) content_length = 0;
    if (c->have < head + (size_t)content_length) return head + (size_t)content_length > READ_BUFFER ? -1 : 0;
    return (ssize_t)(head + (size_t)content_length);
}

static void readable(connection *c) {
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->have, READ_BUFFER - c->have);
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {
            fail(c);
            return;
        }
        if (!c->busy) {  /* bytes nobody asked for */
            fail(c);
            return;
        }
        c->have += (size_t)n;
        int status = 0, close_after = 0;
        ssize_t len = response_length(c, &status, &close_after);
        if (len < 0) {
            fail(c);
            return;
        }
        if (len == 0) continue;
        record(c, now_ns());
        completed++;
        if (status < 200 || status > 299) non2xx++;
        c->busy = 0;
        if (close_after || (size_t)len != c->have) {  /* closed by the peer, or extra bytes: start over */
            epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            reconnects++;
            if (open_connection(c) < 0) c->fd = -1;
            return;
        }
        c->have = 0;
        return;
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t percentile(double p) {
    if (nlat == 0) return 0;
    size_t i = (size_t)(p / 100.0 * (double)nlat);
    if (i >= nlat) i = nlat - 1;
    return latencies[i];
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: loadgen PORT PATH RATE DURATION WARMUP CONNECTIONS [HEADER ...]\n");
        return 2;
    }
    port = atoi(argv[1]);
    const char *path = argv[2];
    double rate = atof(argv[3]);
    double duration = atof(argv[4]), warmup = atof(argv[5]);
    nconns = atoi(argv[6]);
    if (port <= 0 || port > 65535 || path[0] != '/' || rate <= 0 || duration <= 0 || warmup < 0 || nconns <= 0 ||
        nconns > MAX_CONNECTIONS) {
        fprintf(stderr, "loadgen: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    size_t cap = 256 + strlen(path);
    for (int i = 7; i < argc; i++) cap += strlen(argv[i]) + 2;
    request = malloc(cap);
    int off = snprintf(request, cap, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", path, port);
    for (int i = 7; i < argc; i++) off += snprintf(request + off, cap - (size_t)off, "%s\r\n", argv[i]);
    off += snprintf(request + off, cap - (size_t)off, "\r\n");
    request_len = (size_t)off;

    cap_lat = (size_t)(rate * duration * 1.1) + 1024;
    latencies = malloc(cap_lat * sizeof *latencies);
    epfd = epoll_create1(0);
    for (int i = 0; i < nconns; i++) {
        if (open_connection(&conns[i]) < 0) {
            fprintf(stderr, "loadgen: cannot connect to 127.0.0.1:%d: %s\n", port, strerror(errno));
            return 1;
        }
    }
    usleep(100000);  /* let the connections establish before the clock starts */

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    int64_t interval_ns = (int64_t)(1e9 / rate);
    if (interval_ns < 1000) interval_ns = 1000;
    struct itimerspec its = {
        .it_interval = {.tv_sec = interval_ns / 1000000000, .tv_nsec = interval_ns % 1000000000},
        .it_value = {.tv_sec = 0, .tv_nsec = 1},
    };
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);
    int64_t start = now_ns();
    timerfd_settime(tfd, 0, &its, NULL);
    int64_t record_from = start + (int64_t)(warmup * 1e9);
    int64_t stop_at = record_from + (int64_t)(duration * 1e9);
    int64_t give_up = stop_at + 5000000000LL;
    uint64_t scheduled = 0;      /* requests whose time has come */
    uint64_t dispatched = 0;     /* of those, sent */
    int next = 0;                /* round-robin start for idle connections */
    int scheduling = 1;
    struct epoll_event events[256];

    for (;;) {
        int64_t now = now_ns();
        if (scheduling && now >= stop_at) {
            scheduling = 0;
            struct itimerspec off_its = {0};
            timerfd_settime(tfd, 0, &off_its, NULL);
        }
        int inflight = 0;
        for (int i = 0; i < nconns; i++) inflight += conns[i].busy;
        if (!scheduling && dispatched == scheduled && inflight == 0) break;
        if (now >= give_up) break;
        int n = epoll_wait(epfd, events, 256, 100);
        for (int e = 0; e < n; e++) {
            if (events[e].data.ptr == NULL) {
                uint64_t expirations = 0;
                if (read(tfd, &expirations, sizeof expirations) == sizeof expirations && scheduling) scheduled += expirations;
            } else {
                connection *c = events[e].data.ptr;
                if (c->fd >= 0) readable(c);
            }
        }
        /* Dispatch what is due onto idle connections, oldest first; request k was due at start + k * interval. */
        for (int tries = 0; dispatched < scheduled && tries < nconns; tries++) {
            connection *c = &conns[next];
            next = (next + 1) % nconns;
            if (c->fd < 0 && open_connection(c) < 0) continue;
            if (c->busy) continue;
            int64_t due = start + (int64_t)dispatched * interval_ns;
            if (send_request(c, due, due >= record_from) != 0) continue;
            if (now_ns() - due > 1000000) late++;   /* sent more than 1 ms after its time */
            dispatched++;
            tries = -1;  /* sent: look for another free connection */
        }
    }
    uint64_t timeouts = 0;
    for (int i = 0; i < nconns; i++) timeouts += conns[i].busy;
    timeouts += scheduled - dispatched;
    qsort(latencies, nlat, sizeof *latencies, cmp_u32);
    double mean = 0;
    for (size_t i = 0; i < nlat; i++) mean += latencies[i];
    if (nlat) mean /= (double)nlat;
    printf("BENCH_RESULT {\"loop\":\"open\",\"offered_rps\":%.1f,\"requests\":%zu,\"duration_us\":%lld,"
           "\"sent\":%llu,\"completed\":%llu,\"late\":%llu,"
           "\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u,\"p999_us\":%u,\"max_us\":%u,\"mean_us\":%.1f,"
           "\"non2xx\":%llu,\"errors\":%llu,\"reconnects\":%llu,\"timeouts\":%llu}\n",
           rate, nlat, (long long)(duration * 1e6), (unsigned long long)sent, (unsigned long long)completed,
           (unsigned long long)late, percentile(50), percentile(90), percentile(99), percentile(99.9),
           nlat ? latencies[nlat - 1] : 0, mean, (unsigned long long)non2xx, (unsigned long long)errors,
           (unsigned long long)reconnects, (unsigned long long)timeouts);
    return completed > 0 ? 0 : 1;
}

/*
 * The benchmark's static backend: the ceiling every proxy is measured against.
 *
 *   backend PORT
 *
 * One thread, epoll, 127.0.0.1 only. Every request head (up to the blank line) is answered
 * with the same 2-byte "ok"; request bodies are not expected (the benchmark sends GETs) and
 * not supported. Keep-alive and pipelining: one response per "\r\n\r\n" seen, in order.
 * Built by bench/run.sh with gcc -O2; it does nothing else, so it costs as little as possible.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_EVENTS 256

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 2\r\n"
    "\r\n"
    "ok";
#define RESPONSE_LEN (sizeof(RESPONSE) - 1)

/* per connection: how far into "\r\n\r\n" the last bytes read have come */
static unsigned char match_state[MAX_FDS];

static int count_heads(int fd, const char *buf, ssize_t n) {
    static const char end[] = "\r\n\r\n";
    int state = match_state[fd], heads = 0;
    for (ssize_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == end[state]) {
            state++;
            if (state == 4) {
                heads++;
                state = 0;
            }
        } else {
            state = (c == '\r') ? 1 : 0;
        }
    }
    match_state[fd] = (unsigned char)state;
    return heads;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int port = atoi(argv[1]);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(listener, 4096) != 0) {
        perror("backend: bind/listen");
        return 2;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);

    static char buf[65536];
    static char out[RESPONSE_LEN * 64];
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("backend: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                for (;;) {
                    int c = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
                    if (c < 0) break;
                    if (c >= MAX_FDS) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    match_state[c] = 0;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            for (;;) {
                ssize_t r = read(fd, buf, sizeof(buf));
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    close(fd); /* closing removes it from the epoll set */
                    break;
                }
                if (r < 0) break;
                int heads = count_heads(fd, buf, r);
                while (heads > 0) {
                    int batch = heads > 64 ? 64 : heads;
                    for (int k = 0; k < batch; k++) memcpy(out + k * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
                    size_t len = (size_t)batch * RESPONSE_LEN, off = 0;
                    while (off < len) {
                        ssize_t w = write(fd, out + off, len - off);
                        if (w < 0) {
                            if (errno == EINTR) continue;
                            /* a client that does not read 64 responses is not a benchmark client */
                            break;
                        }
                        off += (size_t)w;
                    }
                    heads -= batch;
                }
                if (r < (ssize_t)sizeof(buf)) break;
            }
        }
    }
}

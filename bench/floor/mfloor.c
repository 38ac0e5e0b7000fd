/*
 * mfloor: the least a milter multiplexer can do for make bench-postfix's
 * workload, to measure the floor of a multiplexer's own CPU on this
 * machine. It is a measuring instrument, not a product: it handles what
 * that benchmark sends and nothing more.
 *
 * A thread per MTA connection (a fixed pool), blocking I/O, no event loop, no
 * logging, no configuration, no timeouts, no failure policy, no macro
 * tables, no record of the session. The system calls are the fewest
 * the protocol allows: one read per burst the MTA sends (macros and
 * command arrive together), one write per backend per event (macros and
 * command together; at end of message every header, EOH, body chunk and
 * EOM in one write), one read per burst a backend answers, one write of
 * every edit and the reply to the MTA. Like pmult it grants Postfix
 * NR_HDR/NR_EOH/NR_BODY (content replies given at end of message), sends
 * the envelope to all backends at once, the content to one backend after
 * the other with the headers added by earlier ones, and with reuse keeps
 * backend connections across SMTP sessions (QUIT_NC).
 *
 * Not handled (the benchmark does not send or need them): backends that
 * ask to skip steps or not to reply, edits other than passing them on to
 * the MTA, verdicts before end of message from a backend's content
 * replies, read/write errors beyond ending the session, SMFIR_PROGRESS
 * (skipped), any failure action.
 *
 * usage: mfloor LISTEN REUSE BACKEND...
 *   LISTEN and BACKEND as Postfix spells milters: unix:/path or
 *   inet:PORT@127.0.0.1. REUSE is 0 or 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAXB 8
#define NTHREAD 64

static int nback;
static const char *backspec[MAXB];
static int reuse;

typedef struct {
	char *p;
	size_t n, cap;
} vec;

static void vgrow(vec *v, size_t more)
{
	if (v->n + more <= v->cap)
		return;
	size_t c = v->cap ? v->cap : 4096;
	while (c < v->n + more)
		c *= 2;
	v->p = realloc(v->p, c);
	if (!v->p)
		abort();
	v->cap = c;
}

static void vadd(vec *v, const void *b, size_t n)
{
	vgrow(v, n);
	memcpy(v->p + v->n, b, n);
	v->n += n;
}

/* vpkt appends a packet: length, command, data. */
static void vpkt(vec *v, char cmd, const void *data, uint32_t n)
{
	uint32_t l = htonl(n + 1);
	vadd(v, &l, 4);
	vadd(v, &cmd, 1);
	vadd(v, data, n);
}

/* A buffered reader of packets. */
typedef struct {
	int fd;
	vec b;
	size_t r;
} rd;

/* next returns the next packet's command and data (valid until the
 * next call), reading only when no whole packet is buffered. */
static int next(rd *x, char *cmd, char **data, uint32_t *n)
{
	for (;;) {
		size_t have = x->b.n - x->r;
		if (have >= 5) {
			uint32_t l;
			memcpy(&l, x->b.p + x->r, 4);
			l = ntohl(l);
			if (l == 0 || l > 64 << 20)
				return -1;
			if (have >= 4 + (size_t)l) {
				*cmd = x->b.p[x->r + 4];
				*data = x->b.p + x->r + 5;
				*n = l - 1;
				x->r += 4 + l;
				return 0;
			}
			vgrow(&x->b, 4 + l);
		}
		if (x->r > 0 && x->r == x->b.n) {
			x->r = 0;
			x->b.n = 0;
		} else if (x->r > 0 && x->b.cap - x->b.n < 65536) {
			memmove(x->b.p, x->b.p + x->r, x->b.n - x->r);
			x->b.n -= x->r;
			x->r = 0;
		}
		vgrow(&x->b, 65536);
		ssize_t k = read(x->fd, x->b.p + x->b.n, x->b.cap - x->b.n);
		if (k <= 0)
			return -1;
		x->b.n += k;
	}
}

static int writeall(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= k;
	}
	return 0;
}

/* dial connects to spec, or with listen_too listens on it; -1 on error. */
static int dial(const char *spec, int listen_too)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr *a;
	socklen_t alen;
	int fd, one = 1;
	if (strncmp(spec, "unix:", 5) == 0) {
		strncpy(un.sun_path, spec + 5, sizeof un.sun_path - 1);
		a = (struct sockaddr *)&un;
		alen = sizeof un;
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listen_too)
			unlink(un.sun_path);
	} else if (strncmp(spec, "inet:", 5) == 0) {
		const char *at = strchr(spec, '@');
		in.sin_port = htons(atoi(spec + 5));
		inet_pton(AF_INET, at ? at + 1 : "127.0.0.1", &in.sin_addr);
		a = (struct sockaddr *)&in;
		alen = sizeof in;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (listen_too)
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	} else
		return -1;
	if (fd < 0)
		return -1;
	if (listen_too) {
		/* Postfix's smtpd connects as user postfix */
		if (bind(fd, a, alen) < 0 || (a == (struct sockaddr *)&un && chmod(un.sun_path, 0666) < 0) ||
		    listen(fd, 128) < 0) {
			close(fd);
			return -1;
		}
		return fd;
	}
	if (connect(fd, a, alen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One connection to each backend. */
typedef struct set {
	rd r[MAXB];
	struct set *next;
} set;

static pthread_mutex_t poolmu = PTHREAD_MUTEX_INITIALIZER;
static set *pool;

static void setclose(set *s)
{
	for (int i = 0; i < nback; i++) {
		close(s->r[i].fd);
		free(s->r[i].b.p);
	}
	free(s);
}

static set *setopen(void)
{
	pthread_mutex_lock(&poolmu);
	set *s = pool;
	if (s)
		pool = s->next;
	pthread_mutex_unlock(&poolmu);
	if (s)
		return s;
	s = calloc(1, sizeof *s);
	vec w = {0};
	for (int i = 0; i < nback; i++) {
		s->r[i].fd = dial(backspec[i], 0);
		if (s->r[i].fd < 0) {
			fprintf(stderr, "mfloor: connect %s: %s\n", backspec[i], strerror(errno));
			for (int j = 0; j < i; j++)
				close(s->r[j].fd);
			free(s);
			free(w.p);
			return NULL;
		}
		/* version 6, every action, every NO* and NR_* bit and SKIP
		 * offered, as pmult does (the backends of the benchmark ask
		 * for none of them) */
		uint32_t o[3] = {htonl(6), htonl(0x1ff), htonl(0xff7ff)};
		w.n = 0;
		vpkt(&w, 'O', o, sizeof o);
		if (writeall(s->r[i].fd, w.p, w.n) < 0)
			goto fail;
	}
	for (int i = 0; i < nback; i++) {
		char c;
		char *d;
		uint32_t n;
		if (next(&s->r[i], &c, &d, &n) < 0 || c != 'O' || n < 12)
			goto fail;
		uint32_t prot;
		memcpy(&prot, d + 8, 4);
		if (ntohl(prot) & 0xff3ff) {
			fprintf(stderr, "mfloor: %s asks for protocol 0x%x: steps skipped or not answered are not handled\n",
				backspec[i], ntohl(prot));
			goto fail;
		}
	}
	free(w.p);
	return s;
fail:
	free(w.p);
	setclose(s);
	return NULL;
}

static void setrelease(set *s)
{
	if (!reuse) {
		vec w = {0};
		vpkt(&w, 'Q', "", 0);
		for (int i = 0; i < nback; i++)
			writeall(s->r[i].fd, w.p, w.n);
		free(w.p);
		setclose(s);
		return;
	}
	vec w = {0};
	vpkt(&w, 'K', "", 0);
	for (int i = 0; i < nback; i++)
		writeall(s->r[i].fd, w.p, w.n);
	free(w.p);
	pthread_mutex_lock(&poolmu);
	s->next = pool;
	pool = s;
	pthread_mutex_unlock(&poolmu);
}

static int final(char c)
{
	return c == 'c' || c == 'a' || c == 'r' || c == 't' || c == 'y' || c == 'd';
}

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	rd m = {.fd = fd};
	set *s = NULL;
	vec pend = {0}, hdrs = {0}, rest = {0}, w = {0}, mods = {0}, added = {0}, reply = {0};
	int inbody = 0, inmsg = 0, nhdr = 0, nrest = 0, nadded = 0;
	char c;
	char *d;
	uint32_t n;
	while (next(&m, &c, &d, &n) == 0) {
		switch (c) {
		case 'O': {
			uint32_t o[3];
			if (n < 12)
				goto out;
			memcpy(o, d, 12);
			uint32_t prot = ntohl(o[2]) & (0x80 | 0x40000 | 0x80000); /* NR_HDR, NR_EOH, NR_BODY */
			uint32_t r[3] = {htonl(6), htonl(ntohl(o[1]) & 0x1ff), htonl(prot)};
			w.n = 0;
			vpkt(&w, 'O', r, sizeof r);
			if (writeall(fd, w.p, w.n) < 0)
				goto out;
			break;
		}
		case 'D':
			if (n > 0 && (d[0] == 'L' || d[0] == 'N' || d[0] == 'B' || d[0] == 'E')) {
				vec *v = (d[0] == 'L' && !inbody) ? &hdrs : &rest;
				if (d[0] != 'L')
					inbody = 1;
				vpkt(v, 'D', d, n);
			} else
				vpkt(&pend, 'D', d, n);
			break;
		case 'C':
		case 'H':
		case 'M':
		case 'R':
		case 'T':
		case 'U': {
			if (!s && !(s = setopen()))
				goto out;
			if (c == 'M')
				inmsg = 1;
			vpkt(&pend, c, d, n);
			for (int i = 0; i < nback; i++)
				if (writeall(s->r[i].fd, pend.p, pend.n) < 0)
					goto out;
			pend.n = 0;
			reply.n = 0;
			vpkt(&reply, 'c', "", 0);
			int worse = 0;
			for (int i = 0; i < nback; i++) {
				char rc;
				char *rdp;
				uint32_t rn;
				do {
					if (next(&s->r[i], &rc, &rdp, &rn) < 0)
						goto out;
				} while (rc == 'p');
				if (!worse && rc != 'c' && rc != 'a') {
					reply.n = 0;
					vpkt(&reply, rc, rdp, rn);
					worse = 1;
				}
			}
			if (writeall(fd, reply.p, reply.n) < 0)
				goto out;
			break;
		}
		case 'L':
			vpkt(inbody ? &rest : &hdrs, c, d, n);
			if (inbody)
				nrest++;
			else
				nhdr++;
			break;
		case 'N':
		case 'B':
			inbody = 1;
			vpkt(&rest, c, d, n);
			nrest++;
			break;
		case 'E': {
			if (!s)
				goto out;
			mods.n = 0;
			added.n = 0;
			nadded = 0;
			reply.n = 0;
			vpkt(&reply, 'c', "", 0);
			int worse = 0;
			for (int i = 0; i < nback; i++) {
				w.n = 0;
				vadd(&w, pend.p, pend.n);
				vadd(&w, hdrs.p, hdrs.n);
				vadd(&w, added.p, added.n);
				vadd(&w, rest.p, rest.n);
				vpkt(&w, 'E', d, n);
				if (writeall(s->r[i].fd, w.p, w.n) < 0)
					goto out;
				/* re-read d later: the MTA reader is untouched here */
				int want = nhdr + nadded + nrest;
				for (;;) {
					char rc;
					char *rdp;
					uint32_t rn;
					if (next(&s->r[i], &rc, &rdp, &rn) < 0)
						goto out;
					if (want > 0 && rc == 'c') {
						want--;
						continue;
					}
					if (rc == 'p')
						continue;
					if (final(rc)) {
						if (!worse && rc != 'c' && rc != 'a') {
							reply.n = 0;
							vpkt(&reply, rc, rdp, rn);
							worse = 1;
						}
						break;
					}
					/* an edit: to the MTA, and an added header to the
					 * later backends */
					vpkt(&mods, rc, rdp, rn);
					if (rc == 'h') {
						vpkt(&added, 'L', rdp, rn);
						nadded++;
					}
				}
			}
			pend.n = hdrs.n = rest.n = 0;
			nhdr = nrest = 0;
			inbody = inmsg = 0;
			vadd(&mods, reply.p, reply.n);
			if (writeall(fd, mods.p, mods.n) < 0)
				goto out;
			break;
		}
		case 'A':
			/* Postfix sends ABORT after every message; libmilter,
			 * given it outside a message, falls back to a state where
			 * it ignores QUIT_NC (pmult leaves it out as well) */
			if (s && inmsg) {
				vpkt(&pend, 'A', "", 0);
				for (int i = 0; i < nback; i++)
					writeall(s->r[i].fd, pend.p, pend.n);
			}
			pend.n = hdrs.n = rest.n = 0;
			nhdr = nrest = 0;
			inbody = inmsg = 0;
			break;
		case 'Q':
			goto out;
		default:
			fprintf(stderr, "mfloor: command %c not handled\n", c);
			goto out;
		}
	}
out:
	if (s)
		setrelease(s);
	close(fd);
	free(m.b.p);
	free(pend.p);
	free(hdrs.p);
	free(rest.p);
	free(w.p);
	free(mods.p);
	free(added.p);
	free(reply.p);
	return NULL;
}

static void *acceptor(void *arg)
{
	int l = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		serve((void *)(intptr_t)fd);
	}
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc - 3 > MAXB) {
		fprintf(stderr, "usage: mfloor LISTEN REUSE BACKEND...\n");
		return 2;
	}
	reuse = atoi(argv[2]);
	nback = argc - 3;
	for (int i = 0; i < nback; i++)
		backspec[i] = argv[3 + i];
	signal(SIGPIPE, SIG_IGN);
	int l = dial(argv[1], 1);
	if (l < 0) {
		fprintf(stderr, "mfloor: listen %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	/* A fixed pool of threads, each taking connections in turn with a
	 * blocking accept: no thread is made per connection, and their
	 * context switches stay countable in /proc. NTHREAD sessions at
	 * once at most (the benchmark runs 8). */
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 256 << 10);
	pthread_t t[NTHREAD];
	for (int i = 0; i < NTHREAD; i++)
		if (pthread_create(&t[i], &at, acceptor, (void *)(intptr_t)l) != 0)
			return 1;
	pthread_join(t[0], NULL);
	return 1;
}

# gala-gopher container image on openEuler (docs/packaging.md#container-image).
#
#   docker build -t gala-gopher:2.1.0 .
#   docker run -d --name gala-gopher --privileged --pid=host --network=host \
#       -v /:/host:ro -v /sys:/sys -v /etc/localtime:/etc/localtime:ro \
#       -e GOPHER_HOST_PATH=/host \
#       -e GOPHER_PROBES_INIT='baseinfo {"cmd":{"probe":["cpu","mem","host"]},"state":"running"}' \
#       gala-gopher:2.1.0
#
# The image runs the daemon itself: it applies the GOPHER_* variables (docs/configuration.md)
# and GOPHER_PROBES_INIT on its own, so there is no entrypoint script. The first stage builds
# the RPM from this source tree exactly as an openEuler build host does (build.sh --package,
# rpmbuild, offline); the second installs it. Needs Rust >= 1.85 from the openEuler repositories.
ARG BASE=openeuler/openeuler:24.03-lts

FROM ${BASE} AS rpm
WORKDIR /src
COPY . .
RUN ./build.sh --check \
    && dnf install -y rpm-build dnf-plugins-core \
    && dnf builddep -y gala-gopher.spec \
    && ./build.sh --package /root/rpmbuild/SOURCES \
    && rpmbuild -bb gala-gopher.spec

FROM ${BASE}
COPY --from=rpm /root/rpmbuild/RPMS/ /tmp/rpms/
RUN dnf install -y /tmp/rpms/*/gala-gopher-[0-9]*.rpm \
    && dnf clean all \
    && rm -rf /tmp/rpms
# The metrics endpoint listens on every address of the container (or of the host, with
# --network=host); the REST API stays on 127.0.0.1 unless GOPHER_REST_ADDR says otherwise.
ENV GOPHER_METRIC_ADDR=0.0.0.0
EXPOSE 8888 9999
ENTRYPOINT ["/usr/bin/gala-gopher"]
CMD ["-c", "/etc/gala-gopher/gala-gopher.conf"]

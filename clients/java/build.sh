#!/bin/sh
# Build (and test) the Java client offline with javac and Debian's jars; no Maven, no download.
#   clients/java/build.sh              stubs + client → build/advantage-client.jar, build/classpath,
#                                      build/native (TLS: run java with -Djava.library.path=build/native)
#   clients/java/build.sh test [NAME…] also compile the tests and run them (all, or those named)
# 1. protoc --java_out and Debian's grpc_java_plugin generate the messages and the service stub
#    from proto/advantage/v1/advantage.proto.
# 2. javac compiles them with src/main against libgrpc-java, libprotobuf-java and their Debian
#    dependencies (netty, guava, perfmark, gson) in /usr/share/java.
# 3. TLS: Debian's netty has no JDK ALPN support (gRPC needs ALPN), so TLS goes through OpenSSL
#    (libnetty-tcnative-jni). Debian installs that library as libnetty-tcnative.so, while netty
#    loads libnetty_tcnative.so (and the library checks its own file name): a copy under that name
#    goes into build/native.
# ADVANTAGE_JAVA_BUILD: the build folder (default clients/java/build).
# ADVANTAGE_PROTO_DIR: the folder holding advantage/v1/advantage.proto (default ../../proto).
set -eu
here=$(cd "$(dirname "$0")" && pwd -P)
out=${ADVANTAGE_JAVA_BUILD:-$here/build}
proto_dir=${ADVANTAGE_PROTO_DIR:-$here/../../proto}
install="apt-get install -y default-jdk-headless protobuf-compiler protobuf-compiler-grpc-java-plugin \
libgrpc-java libprotobuf-java libnetty-java libperfmark-java libgoogle-gson-java \
libgeronimo-annotation-1.3-spec-java libnetty-tcnative-java libnetty-tcnative-jni"
jars=/usr/share/java
runtime="grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
protobuf guava perfmark-api gson netty-buffer netty-codec netty-codec-http netty-codec-http2
netty-codec-socks netty-common netty-handler netty-handler-proxy netty-resolver netty-transport
netty-tcnative"
classpath=""
for jar in $runtime; do
	if [ ! -f "$jars/$jar.jar" ]; then
		echo "build.sh: $jars/$jar.jar not found; $install" >&2
		exit 2
	fi
	classpath="$classpath${classpath:+:}$jars/$jar.jar"
done
# grpc_java_plugin 1.41 annotates the stub with javax.annotation.Generated (JSR-250), which the JDK
# no longer ships: needed to compile, not to run.
generated_annotation=$jars/geronimo-annotation-1.3-spec.jar
tcnative=$(ls /usr/lib/*/jni/libnetty-tcnative.so 2>/dev/null | head -n 1)
for tool in java javac jar protoc grpc_java_plugin; do
	if ! command -v "$tool" >/dev/null 2>&1 || [ ! -f "$generated_annotation" ] || [ -z "$tcnative" ]; then
		echo "build.sh: $tool, $generated_annotation or libnetty-tcnative.so not found; $install" >&2
		exit 2
	fi
done
rm -rf "$out/generated" "$out/classes" "$out/native"
mkdir -p "$out/generated" "$out/classes" "$out/native"
cp "$tcnative" "$out/native/libnetty_tcnative.so"
protoc -I "$proto_dir" --java_out="$out/generated" \
	--plugin=protoc-gen-grpc-java="$(command -v grpc_java_plugin)" --grpc-java_out="$out/generated" \
	advantage/v1/advantage.proto
find "$out/generated" "$here/src/main/java" -name '*.java' >"$out/sources"
javac -nowarn --release 17 -encoding UTF-8 -d "$out/classes" \
	-cp "$classpath:$generated_annotation" @"$out/sources"
jar cf "$out/advantage-client.jar" -C "$out/classes" .
printf '%s\n' "$out/advantage-client.jar:$classpath" >"$out/classpath"
if [ "${1:-}" = test ]; then
	shift
	rm -rf "$out/test-classes"
	mkdir -p "$out/test-classes"
	find "$here/src/test/java" -name '*.java' >"$out/test-sources"
	javac -nowarn --release 17 -encoding UTF-8 -d "$out/test-classes" \
		-cp "$(cat "$out/classpath")" @"$out/test-sources"
	exec java -Djava.library.path="$out/native" -cp "$out/test-classes:$(cat "$out/classpath")" dev.advantageservice.client.ClientTest "$@"
fi

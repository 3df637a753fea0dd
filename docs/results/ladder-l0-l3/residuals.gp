# residuals.gp: plots residuals.dat. Rendered by scalinglab report with
#   gnuplot -e "set terminal pdfcairo size 5in,3.4in font 'Sans,10'; set output 'residuals.pdf'" residuals.gp
#   gnuplot -e "set terminal pngcairo size 1100,750 font 'Sans,13'; set output 'residuals.png'" residuals.gp
# (run in this directory); restyle here and rerun.
set encoding utf8
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set key outside right top spacing 1.1 box lc rgb '#bbbbbb'
set format x '10^{%L}'
set logscale x
set xlabel 'training tokens D'
set xrange [3.2768e+06:8.31436e+08]
set xtics ('10M' 1e+07, '30M' 3e+07, '100M' 1e+08, '300M' 3e+08)
set ylabel 'residual (L_{obs} - L_{fit}) / L_{fit} (%)'
set format y '%g'
set title 'Fit residuals per architecture'
plot 0 with lines lc rgb '#666666' notitle, \
     'residuals.dat' index 0 using 1:5 with points pt 7 ps 1.3 lc 1 title 'dense', \
     'residuals.dat' index 1 using 1:5 with points pt 5 ps 1.3 lc 2 title 'hybrid'
